//! The live page's window: a [`Views`] per tenth of the window, the oldest dropped as it
//! leaves, so the page sums up the last `window` (to a tenth) in bounded memory however many
//! spans arrive.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::agg::{Interner, Limits, NameKey, Views};
use crate::report::SpanRecord;

/// Slices per window.
const SLICES: u32 = 10;

pub struct Window {
    window: Duration,
    slice: Duration,
    limits: Limits,
    /// Each slice with the instant it began, oldest first.
    slices: VecDeque<(Instant, Views)>,
    stacks: Interner,
}

impl Window {
    pub fn new(window: Duration, limits: Limits) -> Window {
        Window {
            window,
            slice: (window / SLICES).max(Duration::from_millis(1)),
            limits,
            slices: VecDeque::new(),
            stacks: Interner::new(limits.stacks),
        }
    }

    /// Drops the slices that ended before the window; starts a new one when the last is over.
    fn rotate(&mut self, now: Instant) {
        let mut dropped = false;
        while let Some((start, _)) = self.slices.front() {
            if now.saturating_duration_since(*start + self.slice) > self.window {
                self.slices.pop_front();
                dropped = true;
            } else {
                break;
            }
        }
        if dropped {
            self.stacks.prune();
        }
        let fresh = match self.slices.back() {
            Some((start, _)) => now.saturating_duration_since(*start) >= self.slice,
            None => true,
        };
        if fresh {
            self.slices.push_back((now, Views::new(self.limits)));
        }
    }

    /// Adds the spans of one batch.
    pub fn add_group(&mut self, now: Instant, spans: &[SpanRecord]) {
        self.rotate(now);
        if let Some((_, views)) = self.slices.back_mut() {
            views.add_group(spans, &mut self.stacks);
        }
    }

    /// Everything in the window, merged for drawing, with the kept spans (slow versus fast)
    /// of the names `kept` wants.
    pub fn merged(&mut self, now: Instant, kept: &dyn Fn(&NameKey) -> bool) -> Views {
        self.rotate(now);
        let mut out = Views::new(self.limits);
        for (_, v) in &self.slices {
            out.merge(v, kept);
        }
        out
    }

    /// Distinct stack strings held now.
    pub fn stacks_held(&self) -> usize {
        self.stacks.len()
    }

    pub fn slices(&self) -> usize {
        self.slices.len()
    }
}
