//! The `cgroup` receiver: polls the CPU controller of a service's cgroup (v1 or v2) and emits
//! its usage, CFS throttling counters and quota as OTLP metrics, so the join can put the time
//! a span spent stopped by its CPU limit on the span. Optionally reads the Go service's
//! GOMAXPROCS and says when it is above the quota.

mod config;
pub(crate) mod fs;
mod gomaxprocs;
mod otlp;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hotspan_config::Signal;
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::otlp::metrics::v1::ResourceMetrics;
use hotspan_proto::{Batch, MetricsBatch};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

pub use config::{CgroupConfig, Source, Target};
pub use fs::{CgroupError, CpuCgroup, CpuReading, Mount, Throttling, Version};

use super::pprof_common::string_attribute;
use crate::component::{BoxError, BuildContext, ComponentType, Lifecycle, ReceiverType};
use crate::consumer::SignalConsumers;
use crate::receivers::ingest::Ingest;
use crate::telemetry::{Counter, Gauge, Telemetry};

/// The resource attribute naming the cgroup directory read (no semantic convention has one;
/// `process.linux.cgroup` is a process's whole /proc/<pid>/cgroup text).
pub const CGROUP_PATH: &str = "cgroup.path";
/// How often GOMAXPROCS is read again (it rarely changes; a quota change re-checks at once).
const GOMAXPROCS_EVERY: Duration = Duration::from_secs(30);

impl ComponentType for CgroupReceiver {
    const TYPE_NAME: &'static str = "cgroup";
    type Config = CgroupConfig;
}

impl ReceiverType for CgroupReceiver {
    const SIGNALS: &'static [Signal] = &[Signal::Metrics];

    fn build(
        ctx: &BuildContext,
        config: CgroupConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError> {
        let client = reqwest::Client::builder().build()?;
        Ok(Arc::new(CgroupReceiver {
            name: ctx.name(),
            ingest: Arc::new(Ingest::new(&ctx.name(), "poll", next, ctx.telemetry)),
            config,
            client,
            telemetry: ctx.telemetry.clone(),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        }))
    }
}

pub struct CgroupReceiver {
    name: String,
    config: CgroupConfig,
    ingest: Arc<Ingest>,
    /// For GOMAXPROCS pages.
    client: reqwest::Client,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The quota as the poller last read it: `None` until the first read, then the cores
/// (`None` inside: no limit).
type LimitSeen = Option<Option<f64>>;

/// Polls per target, by result.
struct Outcomes {
    ok: Counter,
    failed: Counter,
    refused: Counter,
}

impl Outcomes {
    fn new(telemetry: &Telemetry, receiver: &str, target: &str) -> Self {
        let c = |outcome: &str| {
            telemetry.metrics.counter(
                "hotspan_cgroup_polls",
                "cgroup polls by outcome: ok, failed (process gone, cgroup unreadable), refused (pipeline full).",
                &[("receiver", receiver), ("target", target), ("outcome", outcome)],
            )
        };
        Outcomes {
            ok: c("ok"),
            failed: c("failed"),
            refused: c("refused"),
        }
    }
}

/// What a target resolved to: one metric stream, until the pid or the cgroup changes.
struct Stream {
    pid: Option<u32>,
    /// The /proc/<pid>/cgroup text it came from: while it reads the same, so is the cgroup.
    proc_cgroup: String,
    cgroup: CpuCgroup,
    resource: Vec<KeyValue>,
    /// `start_time_unix_nano` of its points.
    start: u64,
}

/// One target as the poller keeps it.
pub(crate) struct Watched {
    target: Target,
    label: String,
    stream: Option<Stream>,
    /// False after a failed read: the next poll resolves again, with fresh mounts.
    valid: bool,
    /// The failure last logged, so one that persists is logged once, not every poll.
    last_error: Option<String>,
    outcomes: Outcomes,
    limit: watch::Sender<LimitSeen>,
}

/// Reads every target's cgroup; runs on a blocking thread (the reads are file I/O).
pub(crate) struct Poller {
    env: PollEnv,
    targets: Vec<Watched>,
}

impl Watched {
    fn resource(&self, pid: Option<u32>, cgroup: &CpuCgroup) -> Vec<KeyValue> {
        let ours = ["service.name", "process.pid", CGROUP_PATH];
        let mut attrs = vec![string_attribute("service.name", &self.target.service_name)];
        attrs.extend(
            self.target
                .attributes
                .iter()
                .filter(|(k, _)| !ours.contains(&k.as_str()))
                .map(|(k, v)| string_attribute(k, v)),
        );
        if let Some(pid) = pid {
            attrs.push(KeyValue {
                key: "process.pid".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i64::from(pid))),
                }),
                ..Default::default()
            });
        }
        attrs.push(string_attribute(CGROUP_PATH, &cgroup.dir.display().to_string()));
        attrs
    }

    /// Makes `self.stream` the target's current cgroup. A new pid or directory starts a new
    /// stream (new start time); re-finding the same one keeps it.
    fn resolve(&mut self, env: &PollEnv, mounts: &mut Option<Vec<Mount>>) -> Result<(), CgroupError> {
        let named = match self.target.source() {
            Some(Source::Pid(pid)) => Named::Process(pid),
            Some(Source::PidFile(file)) => Named::Process(fs::read_pid_file(&file)?),
            Some(Source::Path(dir)) => Named::Dir(dir),
            // Validation requires exactly one.
            None => return Err(CgroupError::Unnamed),
        };
        let (pid, proc_cgroup) = match &named {
            Named::Process(pid) => (Some(*pid), fs::read_proc_cgroup(&env.proc_root, *pid)?),
            Named::Dir(_) => (None, String::new()),
        };
        if self.valid {
            if let Some(s) = &self.stream {
                if s.pid == pid && s.proc_cgroup == proc_cgroup {
                    return Ok(());
                }
            }
        }
        if mounts.is_none() {
            *mounts = Some(fs::read_mounts(&env.proc_root)?);
        }
        let mounts = mounts.as_deref().unwrap_or_default();
        let cgroup = match &named {
            Named::Process(pid) => fs::resolve_pid(*pid, &proc_cgroup, mounts)?,
            Named::Dir(dir) => fs::resolve_path(dir, mounts)?,
        };
        let start = match &self.stream {
            Some(s) if s.pid == pid && s.cgroup == cgroup => s.start,
            Some(_) => env.now(),
            None => env.started,
        };
        if self.stream.as_ref().map(|s| (s.pid, &s.cgroup.dir)) != Some((pid, &cgroup.dir)) {
            info!(receiver = %env.receiver, target = %self.label, cgroup = %cgroup.dir.display(), version = ?cgroup.version, pid, "watching cgroup");
        }
        self.stream = Some(Stream {
            pid,
            proc_cgroup,
            resource: self.resource(pid, &cgroup),
            cgroup,
            start,
        });
        self.valid = true;
        Ok(())
    }

    fn poll(
        &mut self,
        env: &PollEnv,
        mounts: &mut Option<Vec<Mount>>,
    ) -> Result<ResourceMetrics, CgroupError> {
        self.resolve(env, mounts)?;
        // `resolve` succeeded, so there is a stream.
        let Some(stream) = &self.stream else {
            return Err(CgroupError::Unnamed);
        };
        let reading = stream.cgroup.read()?;
        let time = env.now();
        self.limit.send_if_modified(|seen| {
            let changed = *seen != Some(reading.limit_cores);
            *seen = Some(reading.limit_cores);
            changed
        });
        Ok(otlp::resource_metrics(
            stream.resource.clone(),
            &reading,
            stream.start,
            time,
        ))
    }
}

/// A target's cgroup as named this poll.
enum Named {
    Process(u32),
    Dir(PathBuf),
}

/// What every target's poll shares.
struct PollEnv {
    receiver: String,
    /// `/proc`; tests plant their own.
    proc_root: PathBuf,
    /// The receiver's start: the start time of each target's first stream.
    started: u64,
}

impl PollEnv {
    fn now(&self) -> u64 {
        unix_nanos(SystemTime::now())
    }
}

impl Poller {
    /// One poll of every target: the metrics of those that could be read, with their index.
    pub(crate) fn poll_all(&mut self) -> Vec<(usize, ResourceMetrics)> {
        // mountinfo is read at most once a round, and only when some target must resolve.
        let mut mounts = None;
        let mut out = Vec::with_capacity(self.targets.len());
        for (i, t) in self.targets.iter_mut().enumerate() {
            match t.poll(&self.env, &mut mounts) {
                Ok(rm) => {
                    if t.last_error.take().is_some() {
                        info!(receiver = %self.env.receiver, target = %t.label, "cgroup readable again");
                    }
                    out.push((i, rm));
                }
                Err(e) => {
                    t.valid = false;
                    t.outcomes.failed.add(1);
                    let message = e.to_string();
                    if t.last_error.as_deref() != Some(message.as_str()) {
                        warn!(receiver = %self.env.receiver, target = %t.label, error = %message, "cannot read the target's cgroup; polling on");
                        t.last_error = Some(message);
                    }
                }
            }
        }
        out
    }
}

async fn run(mut poller: Poller, interval: Duration, ingest: Arc<Ingest>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    // A late poll is taken once, not in a burst: the counters are cumulative.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_refusal: Option<String> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let round = tokio::task::spawn_blocking(move || {
            let polled = poller.poll_all();
            (poller, polled)
        })
        .await;
        let polled;
        (poller, polled) = match round {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cgroup poll panicked; the receiver stops");
                return;
            }
        };
        if polled.is_empty() {
            continue;
        }
        let (indices, resources): (Vec<usize>, Vec<ResourceMetrics>) = polled.into_iter().unzip();
        let batch = Batch::Metrics(MetricsBatch::from_resources(resources));
        // No client waits on a poll and the next one carries the same cumulative counts: a
        // refused batch is counted and left, not retried.
        match ingest.deliver(batch).await {
            Ok(_) => {
                for i in indices {
                    poller.targets[i].outcomes.ok.add(1);
                }
                last_refusal = None;
            }
            Err(e) => {
                for i in indices {
                    poller.targets[i].outcomes.refused.add(1);
                }
                let message = format!("{e:?}");
                if last_refusal.as_deref() != Some(message.as_str()) {
                    warn!(receiver = %poller.env.receiver, error = %message, "the pipeline did not take a cgroup poll");
                    last_refusal = Some(message);
                }
            }
        }
    }
}

/// Reads one target's GOMAXPROCS now and then and compares it with the quota the poller saw.
struct GomaxprocsCheck {
    receiver: String,
    target: String,
    url: String,
    client: reqwest::Client,
    limit: watch::Receiver<LimitSeen>,
    over_quota: Gauge,
    value: Gauge,
    failures: Counter,
    stop: CancellationToken,
}

impl GomaxprocsCheck {
    async fn run(mut self) {
        let mut last_error: Option<String> = None;
        let mut warned: Option<(u32, Option<f64>)> = None;
        loop {
            let seen = *self.limit.borrow_and_update();
            if let Some(limit) = seen {
                let result = tokio::select! {
                    r = gomaxprocs::fetch(&self.client, &self.url) => r,
                    _ = self.stop.cancelled() => return,
                };
                match result.and_then(|body| gomaxprocs::parse(&body)) {
                    Ok(procs) => {
                        last_error = None;
                        self.value.set(i64::from(procs));
                        let over = gomaxprocs::over_quota(procs, limit);
                        self.over_quota.set(i64::from(over));
                        if over && warned != Some((procs, limit)) {
                            warn!(
                                receiver = %self.receiver, target = %self.target, gomaxprocs = procs,
                                quota_cores = limit.unwrap_or_default(),
                                "GOMAXPROCS is above the CPU quota: the service can run more threads than its quota \
                                 has cores, use up each period's quota early and be throttled for the rest; set \
                                 GOMAXPROCS to the quota's cores (rounded up) or raise the limit"
                            );
                        }
                        warned = over.then_some((procs, limit));
                    }
                    Err(e) => {
                        self.failures.add(1);
                        if last_error.as_deref() != Some(e.as_str()) {
                            warn!(receiver = %self.receiver, target = %self.target, url = %self.url, error = %e, "cannot read GOMAXPROCS");
                            last_error = Some(e);
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(GOMAXPROCS_EVERY) => {}
                changed = self.limit.changed() => if changed.is_err() { return },
                _ = self.stop.cancelled() => return,
            }
        }
    }
}

#[async_trait]
impl Lifecycle for CgroupReceiver {
    async fn start(&self) -> Result<(), BoxError> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let mut targets = Vec::with_capacity(self.config.targets.len());
        for target in &self.config.targets {
            let label = target.label();
            let (limit, limit_seen) = watch::channel(None);
            if let Some(url) = &target.go_debug_vars {
                let labels = [("receiver", self.name.as_str()), ("target", label.as_str())];
                let m = &self.telemetry.metrics;
                let check = GomaxprocsCheck {
                    receiver: self.name.clone(),
                    target: label.clone(),
                    url: url.clone(),
                    client: self.client.clone(),
                    limit: limit_seen,
                    over_quota: m.gauge(
                        "hotspan_cgroup_gomaxprocs_over_quota",
                        "1 when the target's GOMAXPROCS is above its CPU quota in cores, rounded up.",
                        &labels,
                    ),
                    value: m.gauge(
                        "hotspan_cgroup_gomaxprocs",
                        "The target's GOMAXPROCS as its go_debug_vars page last said.",
                        &labels,
                    ),
                    failures: m.counter(
                        "hotspan_cgroup_gomaxprocs_failures",
                        "Reads of a target's go_debug_vars page that gave no GOMAXPROCS.",
                        &labels,
                    ),
                    stop: self.stop.clone(),
                };
                tasks.push(tokio::spawn(check.run().in_current_span()));
            }
            targets.push(Watched {
                outcomes: Outcomes::new(&self.telemetry, &self.name, &label),
                target: target.clone(),
                label,
                stream: None,
                valid: false,
                last_error: None,
                limit,
            });
        }
        let poller = Poller {
            env: PollEnv {
                receiver: self.name.clone(),
                proc_root: PathBuf::from("/proc"),
                started: unix_nanos(SystemTime::now()),
            },
            targets,
        };
        tasks.push(tokio::spawn(
            run(
                poller,
                self.config.collection_interval,
                self.ingest.clone(),
                self.stop.clone(),
            )
            .in_current_span(),
        ));
        info!(receiver = %self.name, targets = self.config.targets.len(), interval = ?self.config.collection_interval, "polling cgroups");
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}
