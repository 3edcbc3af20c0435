use std::sync::atomic::{AtomicUsize, Ordering};

use hotspan_proto::{Encoding, TracesBatch};
use tokio::sync::oneshot;

use super::*;

fn spans(first: u64, n: u64) -> Batch {
    let spans: Vec<String> = (first..first + n)
        .map(|id| {
            format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"op {id}","startTimeUnixNano":"1","endTimeUnixNano":"2"}}"#,
                id + 1,
                id + 1
            )
        })
        .collect();
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"s{first}"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    Batch::Traces(TracesBatch::decode(json.as_bytes(), Encoding::Json).expect("test json"))
}

type Heard = oneshot::Receiver<Result<(), ConsumeError>>;

/// A queued request of `n` spans that counts in `done` when its place is freed.
fn request(first: u64, n: u64, done: &Arc<AtomicUsize>) -> (QueueItem, Heard) {
    let done = done.clone();
    let (answer, heard) = oneshot::channel();
    let item = QueueItem::new(spans(first, n), move || {
        done.fetch_add(1, Ordering::SeqCst);
    })
    .answered(Some(answer));
    (item, heard)
}

fn batcher(yaml: &str) -> Batcher {
    let config: QueueBatchConfig = hotspan_config::from_yaml(yaml).expect("config");
    Batcher::new(&config, Sizer::Requests)
}

fn sizes(out: &[Outgoing]) -> Vec<usize> {
    out.iter().map(|o| o.batch.item_count()).collect()
}

#[test]
fn requests_merge_until_min_size_and_are_cut_at_max_size() {
    let b = batcher("{min_size: 1000, max_size: 1000}");
    let done = Arc::new(AtomicUsize::new(0));
    let mut out = Vec::new();
    let mut heard = Vec::new();
    for i in 0..10 {
        let (item, h) = request(i * 300, 300, &done);
        heard.push(h);
        out.extend(b.add(item));
    }
    assert_eq!(sizes(&out), [1000, 1000, 1000]);
    assert!(b.next_deadline().is_none(), "nothing is left waiting");
    // The fourth request (spans 900..1200) is in the first two batches.
    assert_eq!(out[0].shares.len(), 4);
    assert_eq!(out[1].shares.len(), 4);
    let mut out = out.into_iter();
    let first = out.next().expect("first");
    first.settle(false, &Ok(()));
    assert_eq!(
        done.load(Ordering::SeqCst),
        3,
        "the fourth waits for its other part"
    );
    assert!(matches!(heard[0].try_recv(), Ok(Ok(()))));
    assert!(heard[3].try_recv().is_err(), "not answered yet");
    let second = out.next().expect("second");
    second.settle(false, &Err(ConsumeError::Permanent("refused".into())));
    assert_eq!(done.load(Ordering::SeqCst), 6);
    // A request split over two batches hears the worse outcome.
    assert!(matches!(heard[3].try_recv(), Ok(Err(ConsumeError::Permanent(_)))));
    // Dropped unsettled (aborted at the shutdown deadline): its requests' senders hear
    // nothing but that the answer is gone, and their places are released as dropped.
    drop(out);
    assert_eq!(done.load(Ordering::SeqCst), 6, "not done: lost");
    assert!(matches!(
        heard[9].try_recv(),
        Err(oneshot::error::TryRecvError::Closed)
    ));
}

#[test]
fn a_small_batch_waits_for_its_flush_timeout() {
    let b = batcher("{min_size: 1000, flush_timeout: 1s}");
    let done = Arc::new(AtomicUsize::new(0));
    let before = Instant::now();
    let (item, _) = request(0, 10, &done);
    assert!(b.add(item).is_empty());
    let (item, _) = request(10, 20, &done);
    assert!(b.add(item).is_empty());
    let due = b.next_deadline().expect("a deadline");
    assert!(due >= before + Duration::from_secs(1) && due <= Instant::now() + Duration::from_secs(1));
    assert!(
        b.flush(Some(due - Duration::from_millis(1))).is_empty(),
        "not yet due"
    );
    let out = b.flush(Some(due));
    assert_eq!(sizes(&out), [30]);
    assert_eq!(out[0].shares.len(), 2);
    assert!(b.next_deadline().is_none());
    for o in out {
        o.settle(false, &Ok(()));
    }
    assert_eq!(done.load(Ordering::SeqCst), 2);
}

#[test]
fn kept_requests_are_answered_but_not_freed() {
    let b = batcher("{min_size: 0}");
    let done = Arc::new(AtomicUsize::new(0));
    let (item, mut heard) = request(0, 5, &done);
    let out = b.add(item);
    assert_eq!(sizes(&out), [5], "min_size 0 sends each request at once");
    for o in out {
        o.settle(true, &Err(ConsumeError::retryable("shutting down")));
    }
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "kept: its place is not freed for good"
    );
    assert!(matches!(
        heard.try_recv(),
        Ok(Err(ConsumeError::Retryable { .. }))
    ));
}

#[test]
fn the_bytes_sizer_cuts_batches_no_bigger_than_max_size() {
    let b = batcher("{sizer: bytes, min_size: 5000, max_size: 6000}");
    let done = Arc::new(AtomicUsize::new(0));
    let mut out = Vec::new();
    let mut total = 0;
    for i in 0..20 {
        let (item, _) = request(i * 37, 37, &done);
        total += item.batch.item_count();
        out.extend(b.add(item));
    }
    out.extend(b.flush(None));
    assert!(out.len() >= 3, "{:?}", sizes(&out));
    for o in &out[..out.len() - 1] {
        let len = o.batch.encoded_len();
        assert!((5000..=6000).contains(&len), "{len} bytes");
    }
    assert_eq!(sizes(&out).iter().sum::<usize>(), total, "every span once");
    for o in out {
        o.settle(false, &Ok(()));
    }
    assert_eq!(done.load(Ordering::SeqCst), 20);
}

#[test]
fn an_empty_request_is_done_at_once_and_leaves_the_others_waiting() {
    let b = batcher("{min_size: 100}");
    let done = Arc::new(AtomicUsize::new(0));
    let (item, _) = request(0, 10, &done);
    assert!(b.add(item).is_empty());
    let counted = done.clone();
    let empty = QueueItem::new(Batch::Profiles(Default::default()), move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    assert!(b.add(empty).is_empty());
    assert_eq!(done.load(Ordering::SeqCst), 1, "the empty one is done");
    assert_eq!(sizes(&b.flush(None)), [10]);
}
