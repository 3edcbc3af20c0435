//! Compressing export bodies out of the receivers' way. A big body (an 8192-span batch takes
//! about 13 ms to gzip) goes to a few threads of their own that run at the lowest CPU priority
//! (nice 19): where hotspan has one core, a request arriving while a batch deflates is answered
//! at once instead of sharing the core with the deflate, which tripled the p99 of one request
//! in flight (`bench/compare.sh`). In practice the priority ranks hotspan's own threads:
//! a sidecar or a service usually runs in a cgroup of its own, and the kernel shares CPU between cgroups
//! first. Under overload the receivers still fill the sending queue, and then wait on it.

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

/// The compression threads, started on first use: as many as the machine's cores.
fn pool() -> Option<&'static mpsc::Sender<Job>> {
    static POOL: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
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
        (started > 0).then_some(tx)
    })
    .as_ref()
}

/// `body` compressed with `c` at `level`; `grpc`: as a gRPC message (snappy framed, as
/// grpc-go's codec has it; HTTP's is the block format). Big bodies go to the compression
/// threads (to the blocking pool should they not start).
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
    let Some(pool) = pool() else {
        return tokio::task::spawn_blocking(run)
            .await
            .unwrap_or_else(|e| Err(lost(&e)));
    };
    let (done, result) = oneshot::channel();
    pool.send(Box::new(move || {
        let _ = done.send(run());
    }))
    .map_err(|e| lost(&e))?;
    result.await.unwrap_or_else(|e| Err(lost(&e)))
}
