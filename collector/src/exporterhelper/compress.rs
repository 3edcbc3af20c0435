//! Compressing export bodies out of the receivers' way. A big body (an 8192-span batch takes
//! about 13 ms to gzip) goes to a few threads of their own that run at the lowest CPU priority
//! (nice 19): where hotspan has one core, a request arriving while a batch deflates is answered
//! at once instead of sharing the core with the deflate, which tripled the p99 of one request
//! in flight (`bench/compare.sh`). In practice the priority ranks hotspan's own threads:
//! a sidecar or a service usually runs in a cgroup of its own, and the kernel shares CPU between cgroups
//! first. Only while those threads keep up: a body that would wait behind others is compressed
//! at normal priority instead, so under overload compression keeps its fair share of the core
//! rather than leave the receivers to fill the sending queue (gigabytes at its default bound).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use hotspan_proto::compression::{self, Compression, CompressionError};
use tokio::sync::oneshot;

/// Bodies up to this size are compressed on the async worker: they take well under a
/// millisecond.
const COMPRESS_INLINE_BYTES: usize = 64 * 1024;

/// The compression threads' nice value: the lowest priority.
pub const COMPRESSION_NICE: i32 = 19;

/// What the compression threads are named (`/proc/<pid>/task/*/comm`, at most 15 bytes).
pub const COMPRESSION_THREAD: &str = "export-compress";

type Job = Box<dyn FnOnce() + Send>;

/// The compression threads, and how many bodies given to them are not compressed yet.
struct Pool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
    pending: Arc<AtomicUsize>,
}

/// The compression threads, started on first use: as many as the cores hotspan may run on.
fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut started = 0;
        for _ in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(COMPRESSION_THREAD.into())
                .spawn(move || {
                    // Linux's nice is per thread; if it is refused the thread runs as any other.
                    #[cfg(target_os = "linux")]
                    if let Err(e) = rustix::process::nice(COMPRESSION_NICE) {
                        tracing::debug!(error = %e, "compression threads keep their priority");
                    }
                    loop {
                        // A poisoned lock only means another thread panicked holding it.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then(|| Pool {
            jobs: tx,
            threads: started,
            pending: Arc::default(),
        })
    })
    .as_ref()
}

/// `body` compressed with `c` at `level`; `grpc`: as a gRPC message (snappy framed, as
/// grpc-go's codec has it; HTTP's is the block format). Big bodies go to the compression
/// threads while one is free, else to the blocking pool at normal priority.
pub(crate) async fn compress(
    c: Compression,
    level: i32,
    body: Vec<u8>,
    grpc: bool,
) -> Result<Vec<u8>, CompressionError> {
    let small = body.len() <= COMPRESS_INLINE_BYTES;
    let run = move || {
        if grpc {
            compression::compress_grpc(c, level, &body)
        } else {
            compression::compress(c, level, &body)
        }
    };
    if small {
        return run();
    }
    let lost = |e: &dyn std::fmt::Display| CompressionError::Codec("compression task", e.to_string());
    let free = pool().filter(|p| p.pending.fetch_add(1, Ordering::AcqRel) < p.threads);
    let Some(pool) = free else {
        // Counted above even when every thread was busy.
        if let Some(p) = pool() {
            release(&p.pending);
        }
        return tokio::task::spawn_blocking(run)
            .await
            .unwrap_or_else(|e| Err(lost(&e)));
    };
    let (done, result) = oneshot::channel();
    let pending = pool.pending.clone();
    let sent = pool.jobs.send(Box::new(move || {
        let _ = done.send(run());
        release(&pending);
    }));
    if let Err(e) = sent {
        release(&pool.pending);
        return Err(lost(&e));
    }
    result.await.unwrap_or_else(|e| Err(lost(&e)))
}

fn release(pending: &AtomicUsize) {
    pending.fetch_sub(1, Ordering::AcqRel);
}
