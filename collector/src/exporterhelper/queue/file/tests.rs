use super::*;
use hotspan_proto::TracesBatch;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "hotspan-file-queue-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spans(first: u64, n: u64) -> Batch {
    let spans: Vec<String> = (first..first + n)
        .map(|id| {
            format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"op","startTimeUnixNano":"1","endTimeUnixNano":"2"}}"#,
                1,
                id + 1
            )
        })
        .collect();
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    Batch::Traces(TracesBatch::decode(json.as_bytes(), Encoding::Json).expect("test json"))
}

fn first_id(batch: &Batch) -> u64 {
    let Batch::Traces(t) = batch else { panic!("traces") };
    let id = &t.resource_spans()[0].scope_spans[0].spans[0].span_id;
    u64::from_be_bytes(id[..].try_into().expect("8 bytes")) - 1
}

fn config(queue_size: usize, sizer: Sizer) -> QueueConfig {
    QueueConfig {
        queue_size,
        sizer,
        storage: Some("file_storage".into()),
        ..Default::default()
    }
}

fn open(dir: &TempDir, config: QueueConfig) -> (FileQueue, Counter) {
    let corrupt = Counter::default();
    let q = FileQueue::open(
        dir.0.clone(),
        config,
        FileQueueOptions {
            fsync: true,
            write_timeout: Duration::from_secs(5),
        },
        "test".into(),
        corrupt.clone(),
    )
    .expect("open");
    (q, corrupt)
}

fn batch_files(dir: &TempDir, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

async fn pop_now(q: &FileQueue) -> Option<QueueItem> {
    tokio::time::timeout(Duration::from_secs(5), q.pop())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn a_second_process_on_the_same_directory_is_refused() {
    let dir = TempDir::new("lock");
    let (first, _) = open(&dir, config(10, Sizer::Requests));
    let second = FileQueue::open(
        dir.0.clone(),
        config(10, Sizer::Requests),
        FileQueueOptions {
            fsync: false,
            write_timeout: Duration::from_secs(1),
        },
        "again".into(),
        Counter::default(),
    );
    let err = second.err().expect("the directory is locked");
    assert!(err.to_string().contains("in use by another process"), "{err}");
    drop(first);
    // Released with the queue (or the process, after a crash).
    let (_third, _) = open(&dir, config(10, Sizer::Requests));
}

#[tokio::test]
async fn a_released_queue_lets_its_successor_in_the_same_process_take_its_batches() {
    let dir = TempDir::new("release");
    let (old, _) = open(&dir, config(10, Sizer::Requests));
    old.push(spans(7, 3)).await.expect("push");
    old.close();
    // A reload: the old exporter's workers have ended, the old queue still exists.
    old.release();
    let (next, _) = open(&dir, config(10, Sizer::Requests));
    let item = pop_now(&next).await.expect("the old queue's batch");
    assert_eq!(first_id(&item.batch), 7);
    drop(old);
}

#[test]
fn opening_waits_for_the_lock_up_to_the_timeout() {
    let dir = TempDir::new("lock-wait");
    let open_with = |wait: Duration| {
        FileQueue::open(
            dir.0.clone(),
            config(10, Sizer::Requests),
            FileQueueOptions {
                fsync: false,
                write_timeout: wait,
            },
            "restarted".into(),
            Counter::default(),
        )
    };
    let (first, _) = open(&dir, config(10, Sizer::Requests));
    // The old process lets go 200 ms into the new one's wait: it gets the lock.
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
    });
    let started = std::time::Instant::now();
    let second = open_with(Duration::from_secs(10)).expect("the lock, once released");
    assert!(started.elapsed() >= Duration::from_millis(150), "did not wait");
    holder.join().expect("holder");
    // Held past the wait: refused, saying how long it waited.
    let err = open_with(Duration::from_millis(50)).err().expect("still locked");
    assert!(err.to_string().contains("waited 50ms"), "{err}");
    drop(second);
}

#[tokio::test]
async fn push_pop_done_removes_the_file_only_when_done() {
    let dir = TempDir::new("done");
    let (q, _) = open(&dir, config(10, Sizer::Requests));
    q.push(spans(0, 3)).await.expect("push");
    q.push(spans(10, 2)).await.expect("push");
    assert_eq!(batch_files(&dir, ".batch").len(), 2);
    assert_eq!(q.size(), 2);
    let a = pop_now(&q).await.expect("first");
    assert_eq!((first_id(&a.batch), a.batch.item_count()), (0, 3));
    // Being sent still takes room, and is still on disk.
    assert_eq!((q.size(), batch_files(&dir, ".batch").len()), (2, 2));
    a.done();
    assert_eq!((q.size(), batch_files(&dir, ".batch").len()), (1, 1));
    let b = pop_now(&q).await.expect("second");
    assert_eq!(first_id(&b.batch), 10);
    // Dropped without done: back in the queue, still on disk.
    drop(b);
    let b = pop_now(&q).await.expect("again");
    assert_eq!(first_id(&b.batch), 10);
    b.done();
    assert_eq!(q.size(), 0);
    assert!(batch_files(&dir, ".batch").is_empty());
    q.close();
    assert!(pop_now(&q).await.is_none());
    assert!(q.push(spans(20, 1)).await.is_err_and(|e| e.is_retryable()));
}

#[tokio::test]
async fn a_restart_replays_in_order_what_was_not_done() {
    let dir = TempDir::new("replay");
    {
        let (q, _) = open(&dir, config(100, Sizer::Items));
        for i in 0..5 {
            q.push(spans(i * 10, 2)).await.expect("push");
        }
        let first = pop_now(&q).await.expect("pop");
        first.done();
        // Popped but not done when the process "dies": must come back.
        let _in_flight = pop_now(&q).await.expect("pop");
        q.close();
        // A write a crash cut short: never acknowledged, removed at start.
        std::fs::write(dir.0.join("00000000000000000099.tmp"), b"half").expect("write");
        // Dropped, not done: as for a crash, its file stays on disk. (Forgetting it would
        // keep the queue, and so its directory lock, alive past this "process".)
        drop(_in_flight);
    }
    let (q, corrupt) = open(&dir, config(100, Sizer::Items));
    assert_eq!(q.size(), 8, "four batches of two items");
    assert!(batch_files(&dir, ".tmp").is_empty());
    let mut got = Vec::new();
    while q.ready_len() > 0 {
        let item = pop_now(&q).await.expect("pop");
        got.push(first_id(&item.batch));
        item.done();
    }
    assert_eq!(got, [10, 20, 30, 40]);
    assert_eq!(corrupt.get(), 0);
    // New batches number after everything seen, the unfinished write included.
    q.push(spans(50, 1)).await.expect("push");
    assert_eq!(batch_files(&dir, ".batch"), ["00000000000000000100.batch"]);
}

#[tokio::test]
async fn corrupt_and_truncated_files_are_set_aside_and_counted() {
    let dir = TempDir::new("corrupt");
    {
        let (q, _) = open(&dir, config(100, Sizer::Requests));
        for i in 0..4 {
            q.push(spans(i * 10, 1)).await.expect("push");
        }
    }
    let files = batch_files(&dir, ".batch");
    let path = |i: usize| dir.0.join(&files[i]);
    // Garbage, a truncated file, and a flipped payload byte (header intact).
    std::fs::write(path(0), b"this is not a queue file at all").expect("write");
    let whole = std::fs::read(path(1)).expect("read");
    std::fs::write(path(1), &whole[..whole.len() - 3]).expect("write");
    let mut flipped = std::fs::read(path(2)).expect("read");
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::fs::write(path(2), &flipped).expect("write");
    std::fs::write(dir.0.join("notes.txt"), b"not ours").expect("write");

    let (q, corrupt) = open(&dir, config(100, Sizer::Requests));
    // Header checks catch the first two at start; the checksum the third when read.
    assert_eq!(corrupt.get(), 2);
    assert_eq!(q.size(), 2);
    let item = pop_now(&q).await.expect("the good one");
    assert_eq!(first_id(&item.batch), 30);
    assert_eq!(corrupt.get(), 3);
    item.done();
    assert_eq!(q.size(), 0);
    assert_eq!(batch_files(&dir, ".corrupt").len(), 3);
    assert!(batch_files(&dir, ".batch").is_empty());
}

#[tokio::test]
async fn capacity_is_enforced_in_sizer_units_and_blocking_waits_for_room() {
    let dir = TempDir::new("capacity");
    let (q, _) = open(&dir, config(5, Sizer::Items));
    q.push(spans(0, 3)).await.expect("fits");
    let refused = q.push(spans(10, 3)).await;
    assert!(
        matches!(&refused, Err(ConsumeError::Retryable { batch: Some(b), .. }) if b.item_count() == 3),
        "{refused:?}"
    );
    q.push(spans(20, 2)).await.expect("fits exactly");
    assert_eq!(q.size(), 5);
    assert_eq!(q.capacity(), 5);

    let dir = TempDir::new("blocking");
    let q = Arc::new(
        open(
            &dir,
            QueueConfig {
                block_on_overflow: true,
                ..config(1, Sizer::Requests)
            },
        )
        .0,
    );
    q.push(spans(0, 1)).await.expect("fits");
    let pusher = tokio::spawn({
        let q = q.clone();
        async move { q.push(spans(10, 1)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pusher.is_finished(), "waits while full");
    pop_now(&q).await.expect("pop").done();
    let pushed = tokio::time::timeout(Duration::from_secs(5), pusher).await;
    assert!(matches!(pushed, Ok(Ok(Ok(())))), "{pushed:?}");
    // Closing wakes a blocked pusher with a refusal.
    let blocked = tokio::spawn({
        let q = q.clone();
        async move { q.push(spans(20, 1)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    q.close();
    let refused = tokio::time::timeout(Duration::from_secs(5), blocked).await;
    assert!(matches!(refused, Ok(Ok(Err(_)))), "{refused:?}");
}

#[tokio::test]
async fn a_pop_waits_for_a_push_and_close_ends_it() {
    let dir = TempDir::new("wait");
    let (q, _) = open(&dir, config(10, Sizer::Bytes));
    let q = Arc::new(q);
    let popper = tokio::spawn({
        let q = q.clone();
        async move {
            q.pop().await.map(|i| {
                let id = first_id(&i.batch);
                i.done();
                id
            })
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    q.push(spans(7, 1)).await.expect("push");
    let got = tokio::time::timeout(Duration::from_secs(5), popper).await;
    assert!(matches!(got, Ok(Ok(Some(7)))), "{got:?}");
    let popper = tokio::spawn({
        let q = q.clone();
        async move { q.pop().await.is_none() }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    q.close();
    let ended = tokio::time::timeout(Duration::from_secs(5), popper).await;
    assert!(matches!(ended, Ok(Ok(true))), "{ended:?}");
}
