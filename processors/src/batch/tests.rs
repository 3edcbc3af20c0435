use std::time::Duration;

use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use hotspan_proto::{Batch, TracesBatch};

use hotspan_config::ComponentValue;

use super::*;

fn spans(n: usize) -> Batch {
    let spans = (0..n)
        .map(|i| Span {
            name: format!("s{i}"),
            ..Default::default()
        })
        .collect();
    Batch::Traces(TracesBatch::from_resource_spans(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }]))
}

fn processor(size: usize, max: usize, timeout_ms: u64) -> BatchProcessor {
    BatchProcessor::new(BatchConfig {
        send_batch_size: size,
        send_batch_max_size: max,
        timeout: Duration::from_millis(timeout_ms),
    })
}

fn counts(out: &[Batch]) -> Vec<usize> {
    out.iter().map(Batch::item_count).collect()
}

#[test]
fn holds_until_size_is_reached() {
    let mut p = processor(10, 0, 200);
    let mut out = Vec::new();
    p.process(spans(4), &mut out);
    p.process(spans(4), &mut out);
    assert!(out.is_empty());
    assert!(p.next_deadline().is_some());
    p.process(spans(4), &mut out);
    assert_eq!(counts(&out), vec![12]);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn max_size_splits_big_batches_and_keeps_the_remainder() {
    let mut p = processor(10, 15, 200);
    let mut out = Vec::new();
    p.process(spans(37), &mut out);
    // 15 and 15 go; 7 is under send_batch_size and waits for the timeout.
    assert_eq!(counts(&out), vec![15, 15]);
    out.clear();
    p.drain(&mut out);
    assert_eq!(counts(&out), vec![7]);
}

#[test]
fn timeout_sends_what_is_pending() {
    let mut p = processor(100, 0, 50);
    let mut out = Vec::new();
    p.process(spans(3), &mut out);
    let deadline = p.next_deadline().expect("a deadline while items wait");
    p.on_deadline(deadline - Duration::from_millis(1), &mut out);
    assert!(out.is_empty(), "not yet due");
    p.on_deadline(deadline, &mut out);
    assert_eq!(counts(&out), vec![3]);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn zero_timeout_sends_every_batch_at_once() {
    let mut p = processor(100, 2, 0);
    let mut out = Vec::new();
    p.process(spans(5), &mut out);
    assert_eq!(counts(&out), vec![2, 2, 1]);
}

#[test]
fn config_defaults_and_validation() {
    let parse = |text: &str| ComponentValue::from_yaml(text).unwrap().parse::<BatchConfig>();
    assert_eq!(parse("{}").unwrap(), BatchConfig::default());
    let errs = parse("{send_batch_size: 100, send_batch_max_size: 10}").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "send_batch_max_size");
    assert_eq!(parse("{send_batch_sise: 100}").unwrap_err().len(), 1);
    assert_eq!(parse("{timeout: 1s}").unwrap().timeout, Duration::from_secs(1));
    assert!(parse("{send_batch_size: 1000000, send_batch_max_size: 1000000, timeout: 1m}").is_ok());
    assert!(parse("{send_batch_size: 0, send_batch_max_size: 0, timeout: 0s}").is_ok());
    let over: Vec<String> =
        parse("{send_batch_size: 1000001, send_batch_max_size: 18446744073709551615, timeout: 1m0.001s}")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
    assert_eq!(
        over,
        [
            "send_batch_size: must be from 0 to 1000000",
            "send_batch_max_size: must be from 0 to 1000000",
            "timeout: must be from 0s to 1m0s"
        ]
    );
}
