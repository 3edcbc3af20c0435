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
    /// Longest a push may wait for its write before the sender is told to retry, and longest
    /// opening waits for the directory's lock: a process restarted right after `kill -9` may
    /// start while the old one still holds it (otelcol's `file_storage.timeout`).
    pub write_timeout: Duration,
}

pub struct FileQueue {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Held until released: a second process on the same directory would send this one's
    /// batches (and delete them under it), so it is refused at start instead.
    lock: Mutex<Option<std::fs::File>>,
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
        let waited_from = std::time::Instant::now();
        while let Err(e) = lock.try_lock() {
            if waited_from.elapsed() >= options.write_timeout {
                return Err(std::io::Error::other(format!(
                    "queue directory {} is in use by another process ({e}; waited {:?}, file_storage's timeout)",
                    dir.display(),
                    options.write_timeout
                )));
            }
            // Opening happens once, at build: a short sleep beats a lock wait with no bound.
            std::thread::sleep(Duration::from_millis(10));
        }
        let inner = Inner {
            lock: Mutex::new(Some(lock)),
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

    fn release(&self) {
        // Closing the file lets go of its lock.
        drop(self.inner.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    fn size(&self) -> usize {
        self.inner.lock().used
    }

    fn capacity(&self) -> usize {
        self.inner.config.queue_size
    }
}

#[cfg(test)]
mod tests;
