//! The persistent sending queue (`sending_queue.storage`): a batch is acknowledged only once its
//! file is written, and the file is removed only when the batch was sent or given up on, so a
//! crash, a `kill -9` or a shutdown with the backend down loses nothing acknowledged; what is
//! left is sent first at the next start.
//!
//! Format: one file per batch, named by a sequence number that only grows
//! (`00000000000000000042.batch`), so names order the queue. A batch is written to `.tmp` and
//! renamed, so a crash mid-write leaves a `.tmp` (never acknowledged: removed at the next start)
//! and never a short `.batch`. A file is a 20-byte header and then the batch as an OTLP protobuf
//! export request:
//!
//! ```text
//! "HSQ1" | signal u8 | 0 0 0 | items u32 LE | payload length u32 LE | CRC-32 u32 LE
//! ```
//!
//! The CRC-32 covers header bytes 4..16 and the payload. Files that fail any check are renamed
//! `.corrupt` (kept for a person to look at, never replayed), logged and counted.
//!
//! With the storage's `fsync: false` a write reaches the OS before the sender is acknowledged
//! (enough for a process crash); `fsync: true` also syncs the file and the directory (enough for
//! a power loss). Deletions are never synced: a lost one means a batch is sent twice, not lost.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hotspan_config::Signal;
use hotspan_proto::{Batch, Encoding};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::{QueueConfig, QueueItem, SendingQueue, Sizer};
use crate::consumer::ConsumeError;
use crate::telemetry::Counter;

const MAGIC: &[u8; 4] = b"HSQ1";
const HEADER_LEN: usize = 20;
const BATCH_EXT: &str = "batch";
const TMP_EXT: &str = "tmp";
const CORRUPT_SUFFIX: &str = ".corrupt";

/// How the queue's files are written; from the `file_storage` extension.
#[derive(Clone, Debug)]
pub struct FileQueueOptions {
    pub fsync: bool,
    /// Longest a push may wait for its write before the sender is told to retry.
    pub write_timeout: Duration,
}

pub struct FileQueue {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Held for the queue's life: a second process on the same directory would send this
    /// one's batches (and delete them under it), so it is refused at start instead.
    _lock: std::fs::File,
    config: QueueConfig,
    options: FileQueueOptions,
    /// The exporter's name, for logs.
    name: String,
    /// Files found damaged (at start or when read), each set aside as `.corrupt`.
    corrupt: Counter,
    state: Mutex<State>,
    /// Wakes poppers: an item became ready, or the queue closed.
    items: Notify,
    /// Wakes pushers blocked on a full queue: capacity was freed, or the queue closed.
    space: Notify,
}

struct State {
    /// Written and not handed out yet, by sequence number (the order they are sent in), with
    /// the capacity each takes.
    ready: BTreeMap<u64, usize>,
    next_seq: u64,
    /// Capacity taken by batches being written, ready, and being sent.
    used: usize,
    closed: bool,
}

/// A damaged queue file: what is wrong with it.
#[derive(Debug)]
struct Corrupt(String);

impl FileQueue {
    /// Opens the queue in `dir` (created if missing), finding what a previous run left: those
    /// batches are sent first, in order. Damaged files are set aside and counted, never fatal.
    pub fn open(
        dir: PathBuf,
        config: QueueConfig,
        options: FileQueueOptions,
        name: String,
        corrupt: Counter,
    ) -> std::io::Result<FileQueue> {
        std::fs::create_dir_all(&dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        if let Err(e) = lock.try_lock() {
            return Err(std::io::Error::other(format!(
                "queue directory {} is in use by another process ({e})",
                dir.display()
            )));
        }
        let inner = Inner {
            _lock: lock,
            dir,
            config,
            options,
            name,
            corrupt,
            state: Mutex::new(State {
                ready: BTreeMap::new(),
                next_seq: 0,
                used: 0,
                closed: false,
            }),
            items: Notify::new(),
            space: Notify::new(),
        };
        inner.recover()?;
        Ok(FileQueue {
            inner: Arc::new(inner),
        })
    }

    /// Batches waiting on disk (not counting those being sent).
    #[cfg(test)]
    fn ready_len(&self) -> usize {
        self.inner.lock().ready.len()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, seq: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("{seq:020}.{ext}"))
    }

    /// Capacity a batch takes; one bigger than the whole queue takes all of it, as in memory.
    fn need(&self, size: usize) -> usize {
        size.clamp(1, self.config.queue_size)
    }

    /// Reads the directory a previous run left: removes unfinished writes, checks headers,
    /// and queues the rest in order.
    fn recover(&self) -> std::io::Result<()> {
        let mut found = BTreeMap::new();
        let mut max_seq = None::<u64>;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                warn!(exporter = %self.name, path = %path.display(), "ignoring a file in the queue directory");
                continue;
            };
            if file_name == ".lock" {
                continue;
            }
            // Corrupt files keep their number, so new ones never reuse it.
            let (seq, ext) = match parse_name(file_name) {
                Some((seq, ext)) => (seq, ext),
                None => {
                    warn!(exporter = %self.name, path = %path.display(), "ignoring a file that is not a queue file");
                    continue;
                }
            };
            max_seq = max_seq.max(Some(seq));
            match ext {
                TMP_EXT => {
                    // A write cut short by a crash: never acknowledged, so nobody is owed it.
                    if let Err(e) = std::fs::remove_file(&path) {
                        warn!(exporter = %self.name, path = %path.display(), error = %e, "could not remove an unfinished queue file");
                    }
                }
                BATCH_EXT => match read_header(&path) {
                    Ok(h) => {
                        let size = match self.config.sizer {
                            Sizer::Requests => 1,
                            Sizer::Items => h.items as usize,
                            Sizer::Bytes => h.len as usize,
                        };
                        found.insert(seq, self.need(size));
                    }
                    Err(e) => self.set_aside(&path, &e),
                },
                _ => {} // set aside earlier
            }
        }
        let mut st = self.lock();
        st.used = found.values().sum();
        st.next_seq = max_seq.map_or(0, |s| s.saturating_add(1));
        if !found.is_empty() {
            info!(exporter = %self.name, batches = found.len(), dir = %self.dir.display(), "persistent queue: sending what a previous run left");
        }
        if st.used > self.config.queue_size {
            // Kept all the same: dropping acknowledged data to fit a smaller queue is worse.
            warn!(exporter = %self.name, used = st.used, capacity = self.config.queue_size, "persistent queue holds more than its capacity; new data is refused until it drains");
        }
        st.ready = found;
        Ok(())
    }

    /// Renames a damaged file out of the queue (or removes it, if it cannot be renamed).
    fn set_aside(&self, path: &Path, why: &Corrupt) {
        self.corrupt.add(1);
        let mut aside = path.as_os_str().to_owned();
        aside.push(CORRUPT_SUFFIX);
        let moved = std::fs::rename(path, &aside).or_else(|_| std::fs::remove_file(path));
        error!(exporter = %self.name, path = %path.display(), error = %why.0, set_aside = moved.is_ok(), "persistent queue: skipping a corrupt batch file");
    }

    fn release(&self, size: usize) {
        let mut st = self.lock();
        st.used = st.used.saturating_sub(size);
        drop(st);
        self.space.notify_waiters();
    }

    /// Takes capacity and a sequence number, waiting for room when `block_on_overflow`.
    async fn reserve(&self, need: usize) -> Result<u64, &'static str> {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the two is not missed.
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err("exporter is shutting down");
                }
                if st.used.saturating_add(need) <= self.config.queue_size {
                    st.used += need;
                    let seq = st.next_seq;
                    st.next_seq += 1;
                    return Ok(seq);
                }
                if !self.config.block_on_overflow {
                    return Err("sending queue is full");
                }
            }
            notified.await;
        }
    }

    /// Writes the batch and queues it. Runs on a blocking thread, to its end even if the
    /// pusher stopped waiting, so a reservation is always either queued or released.
    fn write(&self, seq: u64, need: usize, batch: Batch) -> Result<(), (std::io::Error, Box<Batch>)> {
        let tmp = self.path(seq, TMP_EXT);
        let result = encode(&batch).and_then(|bytes| {
            let mut open = std::fs::OpenOptions::new();
            open.write(true).create(true).truncate(true);
            // Queued telemetry is nobody else's business on a shared host.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
            let mut f = open.open(&tmp)?;
            // A plain File has no buffer of its own: write_all hands the bytes to the OS.
            f.write_all(&bytes)?;
            if self.options.fsync {
                f.sync_all()?;
            }
            drop(f);
            std::fs::rename(&tmp, self.path(seq, BATCH_EXT))?;
            // The rename is durable only once the directory entry is (on Unix, where a
            // directory can be opened and synced; elsewhere the rename is what we have).
            #[cfg(unix)]
            if self.options.fsync {
                File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.lock().ready.insert(seq, need);
                self.items.notify_one();
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.release(need);
                Err((e, Box::new(batch)))
            }
        }
    }
}

/// A queue file's sequence number and kind, from names this module writes: twenty digits and
/// `.batch`, `.tmp` or `.batch.corrupt`. Anything else is not ours.
fn parse_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ext = match ext {
        BATCH_EXT | TMP_EXT => ext,
        _ if ext == format!("{BATCH_EXT}{CORRUPT_SUFFIX}") => CORRUPT_SUFFIX,
        _ => return None,
    };
    Some((stem.parse().ok()?, ext))
}

/// The queue file for a batch: header and payload.
fn encode(batch: &Batch) -> std::io::Result<Vec<u8>> {
    let payload = batch.encode(Encoding::Protobuf);
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "batch over 4 GiB"))?;
    let items = u32::try_from(batch.item_count()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[signal_code(batch.signal()), 0, 0, 0]);
    out.extend_from_slice(&items.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    let crc = checksum(&out[4..16], &payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(header);
    crc.update(payload);
    crc.sum()
}

fn signal_code(signal: Signal) -> u8 {
    match signal {
        Signal::Traces => 1,
        Signal::Metrics => 2,
        Signal::Logs => 3,
        Signal::Profiles => 4,
    }
}

fn signal_of(code: u8) -> Option<Signal> {
    Some(match code {
        1 => Signal::Traces,
        2 => Signal::Metrics,
        3 => Signal::Logs,
        4 => Signal::Profiles,
        _ => return None,
    })
}

struct Header {
    signal: Signal,
    items: u32,
    len: u32,
    crc: u32,
    /// Bytes 4..16, which the CRC covers.
    covered: [u8; 12],
}

fn le32(b: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[..4]);
    u32::from_le_bytes(word)
}

/// Opens a queue file and checks its header against the file's length.
fn open_checked(path: &Path) -> Result<(File, Header), Corrupt> {
    let io = |e: std::io::Error| Corrupt(format!("reading: {e}"));
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    if file_len < HEADER_LEN as u64 {
        return Err(Corrupt(format!("{file_len} bytes, shorter than the header")));
    }
    let mut h = [0u8; HEADER_LEN];
    f.read_exact(&mut h).map_err(io)?;
    if &h[..4] != MAGIC {
        return Err(Corrupt("not a hotspan queue file (bad magic)".into()));
    }
    let signal = signal_of(h[4]).ok_or_else(|| Corrupt(format!("unknown signal code {}", h[4])))?;
    if h[5..8] != [0, 0, 0] {
        return Err(Corrupt("reserved header bytes are not zero".into()));
    }
    let len = le32(&h[12..16]);
    if u64::from(len) + HEADER_LEN as u64 != file_len {
        return Err(Corrupt(format!(
            "header says {len} payload bytes, file has {}",
            file_len - HEADER_LEN as u64
        )));
    }
    let mut covered = [0u8; 12];
    covered.copy_from_slice(&h[4..16]);
    Ok((
        f,
        Header {
            signal,
            items: le32(&h[8..12]),
            len,
            crc: le32(&h[16..20]),
            covered,
        },
    ))
}

fn read_header(path: &Path) -> Result<Header, Corrupt> {
    open_checked(path).map(|(_, h)| h)
}

/// Reads, checks and decodes a queue file.
fn read_batch(path: &Path) -> Result<Batch, Corrupt> {
    let (mut f, h) = open_checked(path)?;
    // Allocation bounded by the file's real length, which the header was checked against.
    let mut payload = vec![0u8; h.len as usize];
    f.read_exact(&mut payload)
        .map_err(|e| Corrupt(format!("reading: {e}")))?;
    let crc = checksum(&h.covered, &payload);
    if crc != h.crc {
        return Err(Corrupt(format!(
            "checksum mismatch (stored {:08x}, computed {crc:08x})",
            h.crc
        )));
    }
    Batch::decode_bytes(h.signal, payload.into(), Encoding::Protobuf)
        .map_err(|e| Corrupt(format!("decoding: {e}")))
}

/// A batch handed out and not yet finished. Dropped without `finish`, the batch goes back to
/// the front of the queue (it is still on disk): a worker stopped mid-send loses nothing.
struct Slot {
    inner: Arc<Inner>,
    seq: u64,
    size: usize,
    finished: bool,
}

impl Slot {
    /// Sent or given up on: the file goes, and so does its claim on capacity.
    fn finish(mut self) {
        self.finished = true;
        let path = self.inner.path(self.seq, BATCH_EXT);
        if let Err(e) = std::fs::remove_file(&path) {
            // It will be sent again at the next start: a duplicate, not a loss.
            if e.kind() != std::io::ErrorKind::NotFound {
                error!(exporter = %self.inner.name, path = %path.display(), error = %e, "persistent queue: could not remove a sent batch");
            }
        }
        self.inner.release(self.size);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.finished {
            self.inner.lock().ready.insert(self.seq, self.size);
            self.inner.items.notify_one();
        }
    }
}

#[async_trait]
impl SendingQueue for FileQueue {
    async fn push(&self, batch: Batch) -> Result<(), ConsumeError> {
        let need = self.inner.need(self.inner.config.size_of(&batch));
        let seq = match self.inner.reserve(need).await {
            Ok(seq) => seq,
            Err(reason) => return Err(ConsumeError::refused(reason, batch)),
        };
        let inner = self.inner.clone();
        // Nothing awaits between the reservation and this spawn, so it cannot leak.
        let write = tokio::task::spawn_blocking(move || inner.write(seq, need, batch));
        match tokio::time::timeout(self.inner.options.write_timeout, write).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err((e, batch)))) => {
                error!(exporter = %self.inner.name, error = %e, "persistent queue: could not write a batch");
                Err(ConsumeError::Retryable {
                    reason: format!("sending queue could not store the data: {e}"),
                    retry_after: None,
                    batch: Some(batch),
                })
            }
            Ok(Err(e)) => Err(ConsumeError::retryable(format!(
                "sending queue could not store the data: {e}"
            ))),
            // The write goes on and its batch will be sent: the sender's retry may duplicate.
            Err(_) => Err(ConsumeError::retryable(format!(
                "sending queue: the disk write took longer than {:?}",
                self.inner.options.write_timeout
            ))),
        }
    }

    async fn pop(&self) -> Option<QueueItem> {
        loop {
            let notified = self.inner.items.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut st = self.inner.lock();
                if st.closed {
                    return None;
                }
                st.ready.pop_first()
            };
            let Some((seq, size)) = next else {
                notified.await;
                continue;
            };
            let slot = Slot {
                inner: self.inner.clone(),
                seq,
                size,
                finished: false,
            };
            let path = self.inner.path(seq, BATCH_EXT);
            let read = tokio::task::spawn_blocking({
                let path = path.clone();
                move || read_batch(&path)
            })
            .await;
            match read {
                Ok(Ok(batch)) => return Some(QueueItem::new(batch, move || slot.finish())),
                Ok(Err(why)) => {
                    let mut slot = slot;
                    slot.finished = true;
                    self.inner.set_aside(&path, &why);
                    self.inner.release(size);
                }
                // The runtime is going away: the slot's drop puts the batch back.
                Err(_) => return None,
            }
        }
    }

    fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.items.notify_waiters();
        self.inner.space.notify_waiters();
    }

    fn size(&self) -> usize {
        self.inner.lock().used
    }

    fn capacity(&self) -> usize {
        self.inner.config.queue_size
    }
}

#[cfg(test)]
mod tests {
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
}
