//! Nothing acknowledged is lost: through a `kill -9` with a persistent sending queue, through a
//! backend outage with the in-memory queue and retries, and past damaged queue files. Permanent
//! export errors are dropped at once, not retried. Hotspan A (OTLP/HTTP in, `otlp` out) sends to
//! hotspan B (OTLP/gRPC in, file out); both are real processes on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hotspan_tests::restart::{count_spans, file_backend};
use hotspan_tests::{free_port, json_span_id, json_spans, metric, post, scrape, wait_for, Hotspan};

/// The forwarder: OTLP/HTTP in, `otlp` to the backend with short retries that never give up;
/// `sending_queue` is spliced in.
fn forwarder_config(backend_port: u16, sending_queue: &str) -> String {
    format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{backend_port}"
    tls: {{insecure: true}}
    timeout: 1s
    sending_queue: {sending_queue}
    retry_on_failure: {{initial_interval: 50ms, max_interval: 300ms, max_elapsed_time: 0s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
  file_storage: {{directory: "{{dir}}/queue", create_directory: true}}
service:
  extensions: [health_check, file_storage]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
"#
    )
}

const PER_REQUEST: u64 = 10;

/// Clients posting spans to A until told to stop, A stops answering, or 30 s pass; they
/// record the ids of every span that was answered 200.
struct Clients {
    acked: Arc<Mutex<BTreeSet<Vec<u8>>>>,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    fn start(port: u16, n: usize, pause: Duration) -> Clients {
        let url = format!("http://127.0.0.1:{port}/v1/traces");
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let next_id = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let (url, acked, requests, next_id, stop) = (
                    url.clone(),
                    acked.clone(),
                    requests.clone(),
                    next_id.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    let give_up = Instant::now() + Duration::from_secs(30);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
                        let first = next_id.fetch_add(PER_REQUEST, Ordering::Relaxed);
                        let body = json_spans("durable", first, PER_REQUEST).into_bytes();
                        match post(&url, "application/json", None, body) {
                            Ok(a) if a.status == 200 => {
                                acked
                                    .lock()
                                    .expect("lock")
                                    .extend((first..first + PER_REQUEST).map(json_span_id));
                                requests.fetch_add(1, Ordering::Relaxed);
                            }
                            // Refused (full, shutting down): not acknowledged, nobody is owed it.
                            Ok(_) => {}
                            Err(_) => break,
                        }
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Clients {
            acked,
            requests,
            stop,
            threads,
        }
    }

    fn acked_len(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    fn wait_acked(&self, n: usize, timeout: Duration) -> Result<()> {
        wait_for(timeout, &format!("{n} spans acknowledged"), || {
            (self.acked_len() >= n).then_some(())
        })
    }

    fn stop(self) -> BTreeSet<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let acked = self.acked.lock().expect("lock").clone();
        acked
    }
}

/// Waits until every acknowledged span is in B's output; then returns how many spans arrived
/// more than once (allowed: delivery is at least once).
fn all_arrived(backend: &Hotspan, acked: &BTreeSet<Vec<u8>>, logs: &[&Hotspan]) -> Result<usize> {
    let out = backend.path("out.jsonl");
    let mut missing = acked.len();
    let found = wait_for(
        Duration::from_secs(20),
        "every acknowledged span at the backend",
        || {
            let counts = count_spans(&out).ok()?;
            missing = acked.iter().filter(|id| !counts.contains_key(*id)).count();
            (missing == 0).then_some(counts)
        },
    );
    let counts: BTreeMap<Vec<u8>, usize> = match found {
        Ok(c) => c,
        Err(e) => {
            let logs: Vec<String> = logs.iter().map(|h| h.log()).collect();
            return Err(e).with_context(|| {
                format!(
                    "{missing} of {} acknowledged spans never arrived\n--- logs ---\n{}",
                    acked.len(),
                    logs.join("\n---\n")
                )
            });
        }
    };
    Ok(counts.values().filter(|&&n| n > 1).count())
}

fn queue_size(h: &Hotspan) -> Option<f64> {
    metric(
        &scrape(h.port("metrics")).ok()?,
        r#"otelcol_exporter_queue_size{exporter="otlp"}"#,
    )
}

/// A with a persistent queue takes spans while B is down and is killed with SIGKILL mid-stream;
/// restarted on the same directory with B up, it delivers every span it acknowledged.
#[test]
fn kill_9_loses_nothing_acknowledged_with_a_persistent_queue() -> Result<()> {
    let backend_port = free_port();
    let mut forwarder = Hotspan::start(&forwarder_config(
        backend_port,
        "{storage: file_storage, queue_size: 100000}",
    ))?;
    let clients = Clients::start(forwarder.port("http"), 4, Duration::ZERO);
    clients.wait_acked(1000, Duration::from_secs(20))?;
    // Everything acknowledged is still queued (B is down): the gauge counts at least that.
    let acked_requests = clients.requests.load(Ordering::Relaxed) as f64;
    let size = queue_size(&forwarder).context("queue size metric")?;
    ensure!(
        size >= acked_requests,
        "queue size {size} < {acked_requests} acknowledged requests"
    );
    forwarder.kill()?;
    let acked = clients.stop();

    let backend = Hotspan::start(&file_backend(backend_port))?;
    forwarder.restart()?;
    let duplicates = all_arrived(&backend, &acked, &[&forwarder, &backend])?;
    eprintln!(
        "kill -9: {} spans acknowledged, all delivered, {duplicates} more than once",
        acked.len()
    );
    ensure!(
        forwarder.log().contains("sending what a previous run left"),
        "no replay in the log:\n{}",
        forwarder.log()
    );
    wait_for(Duration::from_secs(10), "the queue to empty", || {
        (queue_size(&forwarder)? == 0.0).then_some(())
    })?;
    Ok(())
}

/// B stops (SIGTERM) for two seconds while spans keep arriving at A, whose in-memory queue and
/// retries hold them; B comes back on the same port and every acknowledged span arrives.
#[test]
fn backend_outage_loses_nothing_with_the_memory_queue_and_retries() -> Result<()> {
    let backend_port = free_port();
    let mut backend = Hotspan::start(&file_backend(backend_port))?;
    let forwarder = Hotspan::start(&forwarder_config(backend_port, "{queue_size: 5000}"))?;
    let clients = Clients::start(forwarder.port("http"), 2, Duration::from_millis(5));
    clients.wait_acked(200, Duration::from_secs(10))?;
    backend.terminate()?;
    let before = clients.acked_len();
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        clients.acked_len() > before,
        "A stopped acknowledging while the backend was down"
    );
    backend.restart()?;
    let during = clients.acked_len();
    wait_for(
        Duration::from_secs(10),
        "more spans after the backend is back",
        || (clients.acked_len() > during + 100).then_some(()),
    )?;
    let acked = clients.stop();
    let duplicates = all_arrived(&backend, &acked, &[&forwarder, &backend])?;
    eprintln!(
        "outage: {} spans acknowledged, all delivered, {duplicates} more than once",
        acked.len()
    );
    let log = forwarder.log();
    ensure!(log.contains("will retry"), "no retries in the log:\n{log}");
    ensure!(!log.contains("dropping data"), "data dropped:\n{log}");
    Ok(())
}

/// A batch file damaged on disk and a garbage file in the queue directory are set aside, logged
/// and counted at the next start; every other queued batch is still delivered. A SIGTERM with
/// the backend down leaves the queue on disk instead of waiting to drain it.
#[test]
fn corrupt_queue_files_are_skipped_and_the_rest_replays() -> Result<()> {
    let backend_port = free_port();
    let mut forwarder = Hotspan::start(&forwarder_config(
        backend_port,
        "{storage: file_storage, num_consumers: 2}",
    ))?;
    let url = format!("http://127.0.0.1:{}/v1/traces", forwarder.port("http"));
    // One request at a time, so queue file i holds request i.
    for i in 0..5 {
        let a = post(
            &url,
            "application/json",
            None,
            json_spans("corrupt", i * PER_REQUEST, PER_REQUEST).into_bytes(),
        )?;
        ensure!(a.status == 200, "request {i}: {} {}", a.status, a.body);
    }
    let stopping = Instant::now();
    let status = forwarder.terminate()?;
    ensure!(status.success(), "exit {status}\n{}", forwarder.log());
    ensure!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} with a persistent queue",
        stopping.elapsed()
    );
    ensure!(forwarder.log().contains("stays on disk"), "{}", forwarder.log());

    let queue_dir = forwarder.path("queue").join("exporter_otlp");
    let mut files: Vec<_> = std::fs::read_dir(&queue_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "batch"))
        .collect();
    files.sort();
    ensure!(files.len() == 5, "queue files: {files:?}");
    // Flip the last payload byte of request 1: the header is intact, the checksum is not.
    let mut damaged = std::fs::read(&files[1])?;
    let last = damaged.len() - 1;
    damaged[last] ^= 0x5a;
    std::fs::write(&files[1], damaged)?;
    std::fs::write(
        queue_dir.join("00000000000000000077.batch"),
        b"garbage, not a batch",
    )?;

    forwarder.restart()?;
    // Replayed and still queued (B is down): the five requests less the two damaged files.
    wait_for(Duration::from_secs(10), "queue size 4 after the restart", || {
        (queue_size(&forwarder)? == 4.0).then_some(())
    })
    .with_context(|| forwarder.log())?;
    let backend = Hotspan::start(&file_backend(backend_port))?;
    let good: BTreeSet<Vec<u8>> = [0, 2, 3, 4]
        .iter()
        .flat_map(|i| (i * PER_REQUEST..(i + 1) * PER_REQUEST).map(json_span_id))
        .collect();
    all_arrived(&backend, &good, &[&forwarder, &backend])?;
    let counts = count_spans(&backend.path("out.jsonl"))?;
    ensure!(
        (PER_REQUEST..2 * PER_REQUEST).all(|id| !counts.contains_key(&json_span_id(id))),
        "spans from the damaged file arrived"
    );
    let metrics = scrape(forwarder.port("metrics"))?;
    let corrupt = metric(
        &metrics,
        r#"hotspan_exporter_queue_corrupt_batches{exporter="otlp"}"#,
    );
    ensure!(corrupt == Some(2.0), "corrupt batches {corrupt:?}");
    let log = forwarder.log();
    ensure!(
        log.matches("skipping a corrupt batch file").count() == 2,
        "corrupt files not logged:\n{log}"
    );
    wait_for(Duration::from_secs(10), "the queue to empty", || {
        (queue_size(&forwarder)? == 0.0).then_some(())
    })?;
    Ok(())
}

/// With a sending queue (in memory or on disk), a permanent error (HTTP 404) is not retried: the
/// client was already answered 200, the batch is dropped at once, counted and logged with why.
#[test]
fn permanent_errors_from_a_queue_are_dropped_at_once_and_counted() -> Result<()> {
    let backend = Hotspan::start(
        r#"
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:{port:http}"}}}
exporters:
  debug:
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
"#,
    )?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp/mem: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:mem}}"}}}}}}
  otlp/disk: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:disk}}"}}}}}}
exporters:
  otlphttp/mem:
    traces_endpoint: "http://127.0.0.1:{port}/no/such/path"
    retry_on_failure: {{initial_interval: 10s}}
  otlphttp/disk:
    traces_endpoint: "http://127.0.0.1:{port}/no/such/path"
    sending_queue: {{storage: file_storage}}
    retry_on_failure: {{initial_interval: 10s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
  file_storage: {{directory: "{{dir}}", fsync: true}}
service:
  extensions: [health_check, file_storage]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces/mem: {{receivers: [otlp/mem], exporters: [otlphttp/mem]}}
    traces/disk: {{receivers: [otlp/disk], exporters: [otlphttp/disk]}}
"#,
        port = backend.port("http")
    ))?;
    let started = Instant::now();
    for which in ["mem", "disk"] {
        let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port(which));
        let a = post(
            &url,
            "application/json",
            None,
            json_spans(which, 0, 4).into_bytes(),
        )?;
        ensure!(
            a.status == 200,
            "{which}: queued, so accepted: {} {}",
            a.status,
            a.body
        );
    }
    for which in ["mem", "disk"] {
        let series = format!(r#"otelcol_exporter_send_failed_spans{{exporter="otlphttp/{which}"}}"#);
        // Well before the first retry (10 s) would have happened.
        wait_for(Duration::from_secs(5), &format!("{series} = 4"), || {
            (metric(&scrape(hotspan.port("metrics")).ok()?, &series)? == 4.0).then_some(())
        })
        .with_context(|| hotspan.log())?;
        let size = format!(r#"otelcol_exporter_queue_size{{exporter="otlphttp/{which}"}}"#);
        wait_for(Duration::from_secs(5), &format!("{size} = 0"), || {
            (metric(&scrape(hotspan.port("metrics")).ok()?, &size)? == 0.0).then_some(())
        })?;
    }
    ensure!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    let log = hotspan.log();
    ensure!(
        log.matches("permanent error").count() >= 2 && log.contains("404"),
        "the log does not say why:\n{log}"
    );
    ensure!(
        !log.contains("will retry"),
        "a permanent error was retried:\n{log}"
    );
    // The dropped batch's file is gone from the persistent queue.
    let left: Vec<_> = std::fs::read_dir(hotspan.path("exporter_otlphttp~2Fdisk"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // The directory's lock file stays while the queue is open.
        .filter(|p| !p.ends_with(".lock"))
        .collect();
    ensure!(left.is_empty(), "files left in the queue: {left:?}");
    Ok(())
}

/// Two processes on one queue directory would send (and delete) each other's batches: the
/// second is refused at start, naming the directory.
#[test]
fn a_second_process_on_the_same_queue_directory_is_refused() -> Result<()> {
    let backend = free_port();
    let first = Hotspan::start(&forwarder_config(backend, "{storage: file_storage}"))?;
    let queue = first.path("queue");
    let config = forwarder_config(backend, "{storage: file_storage}")
        .replace("{dir}/queue", &queue.display().to_string());
    let second = Hotspan::start(&config);
    let err = match second {
        Ok(_) => anyhow::bail!("a second hotspan started on {}", queue.display()),
        Err(e) => e.to_string(),
    };
    ensure!(
        err.contains("in use by another process"),
        "unexpected failure: {err}"
    );
    Ok(())
}
