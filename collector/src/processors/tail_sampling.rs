//! The `tail_sampling` processor, registered: its logic and config are
//! `hotspan_processors::tailsampling`. Here its counts become otelcol's metric names.

use std::time::Instant;

use hotspan_config::Signal;
use hotspan_processors::tailsampling::{
    Decision, TailSamplingConfig, TailSamplingProcessor, TailSamplingStats,
};
use hotspan_processors::Processor;
use hotspan_proto::Batch;

use crate::component::{BoxError, BuildContext, ComponentType, ProcessorType};
use crate::telemetry::{Counter, Gauge, Telemetry};

pub struct TailSampling;

impl ComponentType for TailSampling {
    const TYPE_NAME: &'static str = "tail_sampling";
    type Config = TailSamplingConfig;
}

impl ProcessorType for TailSampling {
    const SIGNALS: &'static [Signal] = &[Signal::Traces];

    fn build(ctx: &BuildContext, config: TailSamplingConfig) -> Result<Box<dyn Processor>, BoxError> {
        let inner = TailSamplingProcessor::new(&config).map_err(|e| format!("{}: {}", e.path, e.message))?;
        let metrics = Metrics::new(ctx.telemetry, ctx, inner.stats());
        Ok(Box::new(Metered {
            last: inner.stats().clone(),
            inner,
            metrics,
        }))
    }
}

/// The processor, with its counts published after every call. Counters get the increase since
/// the last call, so instances of one processor in several pipelines add up.
struct Metered {
    inner: TailSamplingProcessor,
    last: TailSamplingStats,
    metrics: Metrics,
}

impl Metered {
    fn publish(&mut self) {
        let now = self.inner.stats();
        let m = &self.metrics;
        let add = |c: &Counter, new: u64, old: u64| c.add(new.saturating_sub(old));
        for ((counters, new), old) in m.policies.iter().zip(&now.policies).zip(&self.last.policies) {
            for d in Decision::ALL {
                let i = d.index();
                add(&counters.traces[i], new.traces[i], old.traces[i]);
                add(&counters.spans[i], new.spans[i], old.spans[i]);
            }
        }
        for d in Decision::ALL {
            let i = d.index();
            add(&m.traces[i], now.traces[i], self.last.traces[i]);
        }
        add(&m.new_traces, now.new_traces, self.last.new_traces);
        add(&m.decided_early, now.decided_early, self.last.decided_early);
        add(&m.late[0], now.late_spans[0], self.last.late_spans[0]);
        add(&m.late[1], now.late_spans[1], self.last.late_spans[1]);
        add(
            &m.dropped_on_shutdown,
            now.dropped_on_shutdown,
            self.last.dropped_on_shutdown,
        );
        m.waiting
            .add(now.waiting_traces as i64 - self.last.waiting_traces as i64);
        self.last.clone_from(now);
    }
}

impl Processor for Metered {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        self.inner.process(batch, out);
        self.publish();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.inner.next_deadline()
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch>) {
        self.inner.on_deadline(now, out);
        self.publish();
    }

    fn drain(&mut self, out: &mut Vec<Batch>) {
        self.inner.drain(out);
        self.publish();
    }
}

struct PolicyCounters {
    traces: [Counter; 3],
    spans: [Counter; 3],
}

struct Metrics {
    policies: Vec<PolicyCounters>,
    traces: [Counter; 3],
    new_traces: Counter,
    decided_early: Counter,
    /// [sampled, not sampled]
    late: [Counter; 2],
    dropped_on_shutdown: Counter,
    waiting: Gauge,
}

impl Metrics {
    fn new(telemetry: &Telemetry, ctx: &BuildContext, stats: &TailSamplingStats) -> Self {
        let m = &telemetry.metrics;
        let processor = ctx.name();
        let processor = processor.as_str();
        let by_decision = |name: &str, help: &'static str, extra: &[(&str, &str)]| -> [Counter; 3] {
            Decision::ALL.map(|d| {
                let (sampled, decision) = d.labels();
                let mut labels = vec![("processor", processor)];
                labels.extend_from_slice(extra);
                labels.extend([("sampled", sampled), ("decision", decision)]);
                m.counter(name, help, &labels)
            })
        };
        let policies = stats
            .policies
            .iter()
            .map(|p| {
                // otelcol's label: the policy's name, after the processor's own name if it has one.
                let policy = match &ctx.id.name {
                    Some(n) => format!("{n}.{}", p.name),
                    None => p.name.clone(),
                };
                let policy = [("policy", policy.as_str())];
                PolicyCounters {
                    traces: by_decision(
                        "otelcol_processor_tail_sampling_count_traces_sampled",
                        "Count of traces that were sampled or not per sampling policy.",
                        &policy,
                    ),
                    spans: by_decision(
                        "otelcol_processor_tail_sampling_count_spans_sampled",
                        "Count of spans that were sampled or not per sampling policy.",
                        &policy,
                    ),
                }
            })
            .collect();
        let one = |name: &str, help: &'static str| m.counter(name, help, &[("processor", processor)]);
        let late = |sampled: &str| {
            m.counter(
                "otelcol_processor_tail_sampling_early_releases_from_cache_decision",
                "Spans that came after their trace was decided and followed the remembered decision.",
                &[("processor", processor), ("sampled", sampled)],
            )
        };
        Metrics {
            policies,
            traces: by_decision(
                "otelcol_processor_tail_sampling_global_count_traces_sampled",
                "Global count of traces that were sampled or not by at least one policy.",
                &[],
            ),
            new_traces: one(
                "otelcol_processor_tail_sampling_new_trace_id_received",
                "Counts the arrival of new traces.",
            ),
            decided_early: one(
                "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early",
                "Traces decided before decision_wait because num_traces were waiting (otelcol drops them; hotspan decides them with the spans they have).",
            ),
            late: [late("true"), late("false")],
            dropped_on_shutdown: one(
                "hotspan_processor_tail_sampling_dropped_on_shutdown",
                "Traces still waiting at shutdown and dropped (drop_pending_traces_on_shutdown).",
            ),
            waiting: m.gauge(
                "otelcol_processor_tail_sampling_sampling_traces_on_memory",
                "Traces waiting for their decision.",
                &[("processor", processor)],
            ),
        }
    }
}
