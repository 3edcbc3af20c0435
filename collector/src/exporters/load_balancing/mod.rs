//! The `load_balancing` exporter (alias `loadbalancing`): the front tier of a gateway fleet.
//! It sends every span and every trace-linked profile sample of one trace to the same backend,
//! so that backend's `spanprofile` connector sees the whole trace and joins it as a single
//! instance would.
//!
//! # Deploying a fleet
//! Two tiers of hotspan, both stateless to operate:
//! - **Routing tier**: receivers (`otlp`, `pprof`, `pprof_scrape`) straight into
//!   `load_balancing`; no `spanprofile`, no `batch` in front of it (batching first only delays).
//!   Any number of routing instances behind one address: they agree on owners without talking
//!   to each other, because each hashes trace ids onto the same ring built from the same backend
//!   list (`resolver.static.hostnames`, or `resolver.dns` on a headless service so every
//!   routing instance sees every gateway).
//! - **Gateway tier**: `otlp` in, `spanprofile` joining, enriched spans out to the backend.
//!
//! ```yaml
//! exporters:
//!   load_balancing:
//!     routing_key: traceID              # or service
//!     resolver:
//!       dns: {hostname: hotspan-gateway-headless, port: 4317, interval: 5s}
//!     protocol:
//!       otlp:
//!         tls: {insecure: true}
//!         timeout: 2s
//!         sending_queue: {queue_size: 5000}
//!         retry_on_failure: {initial_interval: 200ms, max_elapsed_time: 5m}
//! ```
//!
//! Routing: spans go by trace id; samples by their OTLP `Link`'s trace id or a `trace_id`
//! label; samples with neither (no join by trace or span id is possible for them anyway) go by
//! `service.name`, so thread-and-time joins need `routing_key: service` or a single gateway.
//!
//! # Sizing
//! - Gateways hold spans for the join's `wait`: a gateway's memory is its share of
//!   (spans per second x `wait` x span size). Size the fleet so each gateway stays well under
//!   its `max_buffered_spans`; the ring's 100 virtual nodes per backend keep shares within a few
//!   percent of even, but one very large trace is never split.
//! - The routing tier decodes and re-encodes every request; a routing core handles roughly
//!   what a gateway core receives, without the join's memory. One routing instance per three or
//!   four gateways is a reasonable start.
//! - Adding or removing a gateway moves about 1/n of the traces. Traces in flight during a
//!   change can be split across two gateways (joined partly on each), as with otelcol.
//!
//! # Failures
//! The exporter's one `sending_queue` sits in front of the routing: data is routed when it is
//! sent, not when it is queued. A backend that fails an export retryably is left out of the
//! ring for [`DOWN_FOR`] and its part of the batch is re-split on the ring without it and sent
//! at once; when no backend is left, parts wait with `retry_on_failure`'s backoff. With the DNS
//! resolver the ring follows each lookup as well. Nothing the routing tier acknowledged is
//! dropped while a backend remains (short of `max_elapsed_time`); an export whose answer was
//! lost with its backend may arrive twice.

mod config;
mod ring;
mod split;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hotspan_config::Signal;
use hotspan_proto::Batch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

pub use config::{
    DnsResolver, LoadBalancingConfig, ProtocolConfig, ResolverConfig, RoutingKey, StaticResolver,
};
pub use ring::Ring;

use crate::component::{BoxError, BuildContext, BuiltExporter, ComponentType, Exporter, ExporterType};
use crate::exporters::{otlp_grpc, ExportError, RetryConfig};
use crate::extensions::bearertokenauth::BearerTokenAuth;
use crate::retry::Backoff;

/// How long a backend that failed an export stays out of the ring before it is tried again.
pub const DOWN_FOR: Duration = Duration::from_secs(15);

impl ComponentType for LoadBalancingExporter {
    const TYPE_NAME: &'static str = "load_balancing";
    const ALIASES: &'static [&'static str] = &["loadbalancing"];
    type Config = LoadBalancingConfig;
}

impl ExporterType for LoadBalancingExporter {
    const SIGNALS: &'static [Signal] = &[Signal::Traces, Signal::Profiles];

    fn build(ctx: &BuildContext, config: LoadBalancingConfig) -> Result<BuiltExporter, BoxError> {
        let auth = config
            .protocol
            .otlp
            .auth
            .as_ref()
            .map(|a| a.find(ctx, "protocol.otlp.auth"))
            .transpose()?;
        let lb = LoadBalancer {
            name: ctx.name(),
            routing_key: config.routing_key,
            retry: config.protocol.otlp.retry_on_failure.clone(),
            auth,
            dns: config.resolver.dns.clone(),
            members: Mutex::new(Members::default()),
            stop: CancellationToken::new(),
            shutdown: std::sync::OnceLock::new(),
            shutting_down: CancellationToken::new(),
            config: config.clone(),
        };
        if let Some(s) = &config.resolver.static_list {
            lb.set_backends(s.hostnames.clone())?;
        }
        Ok(BuiltExporter {
            exporter: Arc::new(LoadBalancingExporter(Arc::new(lb))),
            queue: config.protocol.otlp.sending_queue,
            // Retrying is done inside, part by part, so a batch's delivered parts are not sent
            // again when another part must wait.
            retry: RetryConfig::disabled(),
        })
    }
}

/// One backend and its own (queue-less) `otlp_grpc` exporter.
struct Backend {
    endpoint: String,
    exporter: Arc<dyn Exporter>,
    /// Left out of the ring until then, after a failed export.
    down_until: Mutex<Option<Instant>>,
}

impl Backend {
    fn is_up(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t <= now)
    }

    /// It answered: back in the ring, if it was out.
    fn mark_up(&self) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Takes the backend out of the ring; says whether it was in.
    fn mark_down(&self, now: Instant) -> bool {
        let mut until = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let was_up = until.is_none_or(|t| t <= now);
        *until = Some(now + DOWN_FOR);
        was_up
    }
}

#[derive(Default)]
struct Members {
    /// By endpoint.
    backends: BTreeMap<String, Arc<Backend>>,
    /// The last ring built, for the endpoints it was built from: rebuilt only on a change.
    ring: Option<Arc<Ring>>,
}

/// The ring in use for one round of sends, and the backends its indices name.
struct View {
    ring: Arc<Ring>,
    backends: Vec<Arc<Backend>>,
}

struct LoadBalancer {
    /// `load_balancing[/name]`, for logs.
    name: String,
    routing_key: RoutingKey,
    retry: RetryConfig,
    /// What each backend's exporter is built from (endpoint filled in per backend).
    config: LoadBalancingConfig,
    /// Found at build time, so backends that appear later (DNS) can be built without a context.
    auth: Option<Arc<BearerTokenAuth>>,
    dns: Option<DnsResolver>,
    members: Mutex<Members>,
    /// Ends the DNS refresh task.
    stop: CancellationToken,
    /// Set when shutdown begins ([`Exporter::begin_shutdown`]): its deadline, and whether the
    /// runtime keeps the batch (then retrying stops at once).
    shutdown: std::sync::OnceLock<(Instant, bool)>,
    /// Cancelled when shutdown begins, to cut a wait between rounds short.
    shutting_down: CancellationToken,
}

impl LoadBalancer {
    /// Makes `endpoints` the backends: new ones get an exporter, gone ones are dropped (their
    /// in-flight parts finish or fail and are re-routed).
    fn set_backends(&self, endpoints: Vec<String>) -> Result<(), BoxError> {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = BTreeMap::new();
        for endpoint in endpoints {
            let backend = match members.backends.get(&endpoint) {
                Some(b) => b.clone(),
                None => Arc::new(Backend {
                    exporter: otlp_grpc::exporter(
                        &self.config.backend(&config::dial_address(&endpoint)),
                        self.auth.clone(),
                    )?,
                    endpoint: endpoint.clone(),
                    down_until: Mutex::new(None),
                }),
            };
            next.insert(endpoint, backend);
        }
        if next.keys().ne(members.backends.keys()) {
            info!(exporter = %self.name, backends = ?next.keys().collect::<Vec<_>>(), "load balancing backends changed");
            members.backends = next;
            members.ring = None;
        }
        Ok(())
    }

    /// The ring of the backends up now; of all of them when none is (so whichever comes back
    /// first gets its share).
    fn view(&self) -> View {
        let now = Instant::now();
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        let mut up: Vec<Arc<Backend>> = members
            .backends
            .values()
            .filter(|b| b.is_up(now))
            .cloned()
            .collect();
        if up.is_empty() {
            up = members.backends.values().cloned().collect();
        }
        let names: Vec<String> = up.iter().map(|b| b.endpoint.clone()).collect();
        let ring = match &members.ring {
            Some(r) if r.backends() == names.as_slice() => r.clone(),
            _ => {
                let r = Arc::new(Ring::new(names));
                members.ring = Some(r.clone());
                r
            }
        };
        // `up` is in endpoint order, as the ring's backends are.
        View { ring, backends: up }
    }

    async fn resolve(dns: &DnsResolver) -> Result<Vec<String>, String> {
        let lookup = tokio::net::lookup_host((dns.hostname.as_str(), dns.port));
        let addrs = tokio::time::timeout(dns.timeout, lookup)
            .await
            .map_err(|_| format!("no answer within {:?}", dns.timeout))?
            .map_err(|e| e.to_string())?;
        let mut endpoints: Vec<String> = addrs.map(|a| a.to_string()).collect();
        endpoints.sort();
        endpoints.dedup();
        Ok(endpoints)
    }

    async fn refresh(&self, dns: &DnsResolver) {
        match Self::resolve(dns).await {
            Ok(endpoints) if endpoints.is_empty() => {
                warn!(exporter = %self.name, hostname = %dns.hostname, "DNS returned no addresses; keeping the backends")
            }
            Ok(endpoints) => {
                if let Err(e) = self.set_backends(endpoints) {
                    error!(exporter = %self.name, error = %e, "cannot build a backend exporter");
                }
            }
            Err(e) => {
                warn!(exporter = %self.name, hostname = %dns.hostname, error = %e, "DNS lookup failed; keeping the backends")
            }
        }
    }
}

/// What became of one backend's parts in a round.
struct Outcome {
    backend: Arc<Backend>,
    /// Parts that failed retryably, with the error.
    failed: Vec<(Batch, ExportError)>,
    /// Parts refused for good.
    permanent: Vec<String>,
}

async fn send_parts(backend: Arc<Backend>, parts: Vec<Batch>) -> Outcome {
    let mut outcome = Outcome {
        backend: backend.clone(),
        failed: Vec::new(),
        permanent: Vec::new(),
    };
    let mut parts = parts.into_iter();
    while let Some(part) = parts.next() {
        match backend.exporter.export(&part).await {
            Ok(()) => backend.mark_up(),
            Err(ExportError::Permanent(reason) | ExportError::PartlySent { reason, .. }) => {
                outcome.permanent.push(reason)
            }
            Err(e) => {
                // The backend is failing: the rest go elsewhere without trying it.
                outcome.failed.push((part, e));
                for rest in parts.by_ref() {
                    outcome
                        .failed
                        .push((rest, ExportError::retryable("backend failed earlier")));
                }
            }
        }
    }
    outcome
}

/// The exporter the runtime holds: the shared state, which the DNS task also holds.
pub struct LoadBalancingExporter(Arc<LoadBalancer>);

#[async_trait]
impl Exporter for LoadBalancingExporter {
    async fn start(&self) -> Result<(), BoxError> {
        let Some(dns) = self.0.dns.clone() else {
            return Ok(());
        };
        // One lookup before data flows; a failure leaves the ring empty and exports waiting.
        self.0.refresh(&dns).await;
        let lb = self.0.clone();
        tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(dns.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => lb.refresh(&dns).await,
                        _ = lb.stop.cancelled() => break,
                    }
                }
            }
            .in_current_span(),
        );
        Ok(())
    }

    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        self.0.export(batch).await
    }

    fn begin_shutdown(&self, deadline: Instant, keep: bool) {
        let _ = self.0.shutdown.set((deadline, keep));
        self.0.shutting_down.cancel();
    }

    async fn shutdown(&self) {
        self.0.stop.cancel();
        let backends: Vec<Arc<Backend>> = {
            let members = self.0.members.lock().unwrap_or_else(|p| p.into_inner());
            members.backends.values().cloned().collect()
        };
        for b in backends {
            b.exporter.shutdown().await;
        }
    }
}

impl LoadBalancer {
    /// Sends every part of `batch` to its owner; a part whose owner fails retryably is re-split
    /// on the ring without that backend and sent again, until all are delivered, retrying
    /// gives up, or (with no backend left to move to) after `retry_on_failure`'s backoff.
    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        // What is still to send; the first round splits `batch` itself, saving a copy.
        let mut pending: Option<Vec<Batch>> = None;
        let mut permanent: Option<String> = None;
        loop {
            let view = self.view();
            if view.ring.is_empty() {
                // DNS has not answered yet: wait like any other retryable failure.
                self.wait(
                    &mut backoff,
                    started,
                    ExportError::retryable("no backends resolved yet"),
                )
                .await?;
                continue;
            }
            let mut per_backend: BTreeMap<usize, Vec<Batch>> = BTreeMap::new();
            let to_send = pending.as_deref().unwrap_or(std::slice::from_ref(batch));
            for b in to_send {
                for (i, part) in split::split(b, self.routing_key, &view.ring) {
                    let parts = per_backend.entry(i).or_default();
                    // Spans for one backend merge into one request; profiles cannot.
                    let unmerged = match parts.last_mut() {
                        Some(last) => last.append(part),
                        None => Some(part),
                    };
                    parts.extend(unmerged);
                }
            }
            let mut sends = JoinSet::new();
            for (i, parts) in per_backend {
                if let Some(backend) = view.backends.get(i) {
                    sends.spawn(send_parts(backend.clone(), parts));
                }
            }
            let mut failed_parts = Vec::new();
            let mut last_error = None;
            let now = Instant::now();
            while let Some(joined) = sends.join_next().await {
                let outcome = match joined {
                    Ok(o) => o,
                    Err(e) => return Err(ExportError::Permanent(format!("sending task failed: {e}"))),
                };
                if let Some(reason) = outcome.permanent.into_iter().next() {
                    error!(exporter = %self.name, backend = %outcome.backend.endpoint, error = %reason, "backend refused data for good");
                    permanent.get_or_insert(reason);
                }
                if outcome.failed.is_empty() {
                    continue;
                }
                if outcome.backend.mark_down(now) {
                    warn!(exporter = %self.name, backend = %outcome.backend.endpoint, error = %outcome.failed[0].1, down_for = ?DOWN_FOR, "backend failed; routing its data to the others");
                }
                for (part, err) in outcome.failed {
                    failed_parts.push(part);
                    last_error.get_or_insert(err);
                }
            }
            pending = Some(failed_parts);
            let Some(err) = last_error else {
                return match permanent {
                    None => Ok(()),
                    Some(reason) => Err(ExportError::Permanent(reason)),
                };
            };
            // The ring changed (a backend left, or one came back while all were out):
            // re-route at once.
            if self.view().ring.backends() != view.ring.backends() {
                continue;
            }
            self.wait(&mut backoff, started, err).await?;
        }
    }

    /// Waits before the next round, or says retrying is over.
    async fn wait(
        &self,
        backoff: &mut Backoff<'_>,
        started: Instant,
        err: ExportError,
    ) -> Result<(), ExportError> {
        if !self.retry.enabled {
            return Err(err);
        }
        let hint = match &err {
            ExportError::Retryable { retry_after, .. } => *retry_after,
            ExportError::Permanent(_) | ExportError::PartlySent { .. } => None,
        };
        let wait = backoff.next(hint);
        let elapsed = started.elapsed();
        if !self.retry.max_elapsed_time.is_zero() && elapsed + wait > self.retry.max_elapsed_time {
            return Err(ExportError::retryable(format!(
                "{err}; no more retries after {elapsed:?}"
            )));
        }
        warn!(exporter = %self.name, error = %err, retry_in = ?wait, "export failed, will retry");
        let wake = Instant::now() + wait;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.shutting_down.cancelled() => {}
        }
        // Shutdown began: stop now when the batch is kept, else wait no later than its deadline,
        // as the runtime's own retry does; a worker cut off at the deadline would lose the
        // batch uncounted.
        match self.shutdown.get() {
            Some((_, true)) => Err(ExportError::retryable(format!("{err}; shutting down"))),
            Some((deadline, false)) if wake > *deadline => Err(ExportError::retryable(format!(
                "{err}; shutdown deadline reached"
            ))),
            Some(_) => {
                tokio::time::sleep_until(wake.into()).await;
                Ok(())
            }
            None => Ok(()),
        }
    }
}
