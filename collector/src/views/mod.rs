//! Why spans are slow, from the annotated spans themselves: per span name (and per service)
//! an aggregate flame graph of every sample joined to its spans, its duration percentiles and
//! CPU per span; slow versus fast as a differential flame graph; each trace as a waterfall of
//! its spans' time split into CPU, waiting, GC pause, throttling, child spans and the rest;
//! the latency breakdown per name; the CPU by sample labels. One module for both the live
//! page (`hotspan_ui`, which keeps a [`Window`]) and `hotspan report --html` (one [`Views`]).

mod agg;
mod breakdown;
mod diff;
mod histogram;
pub mod html;
mod waterfall;
mod window;

pub use agg::{Dropped, Interner, Kept, Limits, NameAgg, NameKey, Views, OTHER_STACKS, OVER_CAP};
pub use breakdown::{child_coverage, PartSums, Parts, Segment, NO_REASON};
pub use diff::{slow_fast, SlowFast};
pub use histogram::Histogram;
pub use html::Links;
pub use waterfall::{parts_in_trace, waterfall};
pub use window::Window;

impl Views {
    /// Every name of `service` summed into one, for the service's views.
    pub fn service(&self, service: &str) -> Option<NameAgg> {
        let mut out: Option<NameAgg> = None;
        for ((s, _), n) in &self.names {
            if s == service {
                out.get_or_insert_with(NameAgg::default).merge(n);
            }
        }
        out
    }

    /// Services, most CPU first.
    pub fn services(&self) -> Vec<(String, u64, u64)> {
        let mut by: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for ((s, _), n) in &self.names {
            let e = by.entry(s).or_default();
            e.0 += n.count;
            e.1 = e.1.saturating_add(n.weight);
        }
        let mut out: Vec<(String, u64, u64)> =
            by.into_iter().map(|(s, (c, w))| (s.to_string(), c, w)).collect();
        out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

#[cfg(test)]
mod tests;
