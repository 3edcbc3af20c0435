//! The `memory_limiter` processor, with otelcol's keys. It acts at admission: receivers ask
//! the pipelines they feed before reading or decoding a request, and above the soft limit
//! (limit minus spike) the request is refused with a retryable status. Memory is the
//! allocator's live bytes (jemalloc's `stats.allocated`), as otelcol reads Go's heap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotspan_config::{bounds, ComponentConfig, FieldError, Signal};
use hotspan_processors::{Admission, Processor};

use crate::component::{BoxError, BuildContext, ComponentType, ProcessorType};
use hotspan_proto::Batch;
use serde::Deserialize;
use tracing::{info, warn};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// How often memory is measured; between measurements the last verdict stands.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub check_interval: Duration,
    /// Hard limit in MiB.
    pub limit_mib: u64,
    /// Headroom below the hard limit where refusing starts; default 20% of the limit.
    pub spike_limit_mib: u64,
    /// Hard limit as a percentage of the machine's memory, when `limit_mib` is not set.
    pub limit_percentage: u64,
    pub spike_limit_percentage: u64,
    /// otelcol's garbage collector pacing. Rust has no collector: accepted and without effect.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub min_gc_interval_when_soft_limited: Duration,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub min_gc_interval_when_hard_limited: Duration,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub max_gc_interval_when_soft_limited: Duration,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub max_gc_interval_when_hard_limited: Duration,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: Duration::from_secs(1),
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
            min_gc_interval_when_soft_limited: Duration::ZERO,
            min_gc_interval_when_hard_limited: Duration::ZERO,
            max_gc_interval_when_soft_limited: Duration::ZERO,
            max_gc_interval_when_hard_limited: Duration::ZERO,
        }
    }
}

impl ComponentConfig for MemoryLimiterConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        // Past a minute, memory can grow unchecked for too long between readings.
        let minute = Duration::from_secs(60);
        bounds::check_duration(
            self.check_interval,
            Duration::from_nanos(1)..=minute,
            "check_interval",
            errs,
        );
        // Both set: limit_mib wins, as in otelcol.
        if self.limit_mib == 0 && self.limit_percentage == 0 {
            errs.push(FieldError::new("limit_mib", "set limit_mib or limit_percentage"));
        }
        // Their bytes overflowed 64 bits from 2^44 MiB: a panic when the processor was built.
        bounds::check(self.limit_mib, 0..=MAX_LIMIT_MIB, "limit_mib", errs);
        bounds::check(self.spike_limit_mib, 0..=MAX_LIMIT_MIB, "spike_limit_mib", errs);
        if self.limit_mib > 0 && self.spike_limit_mib >= self.limit_mib {
            errs.push(FieldError::new("spike_limit_mib", "must be less than limit_mib"));
        }
        bounds::check(self.limit_percentage, 0..=100, "limit_percentage", errs);
        bounds::check(
            self.spike_limit_percentage,
            0..=100,
            "spike_limit_percentage",
            errs,
        );
        if self.limit_percentage > 0 && self.spike_limit_percentage >= self.limit_percentage {
            errs.push(FieldError::new(
                "spike_limit_percentage",
                "must be less than limit_percentage",
            ));
        }
    }
}

const MIB: u64 = 1024 * 1024;

/// Largest `limit_mib` (1 PiB): more memory than any machine has, and its bytes fit in 64 bits.
const MAX_LIMIT_MIB: u64 = 1 << 30;

impl MemoryLimiterConfig {
    /// (soft, hard) limits in bytes, given the machine's total memory.
    fn limits(&self, total: u64) -> (u64, u64) {
        let (hard, spike) = if self.limit_mib > 0 {
            let spike = if self.spike_limit_mib > 0 {
                self.spike_limit_mib
            } else {
                self.limit_mib / 5
            };
            (self.limit_mib * MIB, spike * MIB)
        } else {
            let hard = total / 100 * self.limit_percentage;
            let spike = if self.spike_limit_percentage > 0 {
                total / 100 * self.spike_limit_percentage
            } else {
                hard / 5
            };
            (hard, spike)
        };
        (hard.saturating_sub(spike), hard)
    }
}

/// Bytes the program has live on the heap.
fn heap_bytes() -> u64 {
    // The epoch must advance for jemalloc to refresh its statistics.
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read()
        .map(|b| b as u64)
        .unwrap_or(0)
}

/// The machine's memory, for the percentage limits (the limit of hotspan's own cgroup when
/// lower, v1 or v2, found as the `cgroup` receiver finds a process's: a systemd service's
/// `MemoryMax=` is not at the hierarchy's root, where this once looked).
fn total_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024);
    let cgroup = (|| {
        use crate::receivers::cgroup::fs;
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        fs::memory_limit(
            &proc_cgroup,
            &fs::read_mounts(std::path::Path::new("/proc")).ok()?,
        )
    })();
    match cgroup {
        Some(c) if c > 0 && c < total => c,
        _ => total,
    }
}

/// The limiter's state, shared by the processor and every receiver that asks it.
pub struct Limiter {
    soft: u64,
    hard: u64,
    interval: Duration,
    /// When memory was last measured.
    checked: Mutex<Instant>,
    refusing: AtomicBool,
    last: AtomicU64,
    /// Where memory comes from: the allocator, or a stand-in in tests.
    probe: fn() -> u64,
}

impl Limiter {
    fn new(config: &MemoryLimiterConfig, probe: fn() -> u64) -> Self {
        let total = total_memory();
        let (soft, hard) = config.limits(total);
        info!(
            soft_bytes = soft,
            hard_bytes = hard,
            of_bytes = total,
            "memory_limiter limits"
        );
        let now = Instant::now();
        Limiter {
            soft,
            hard,
            interval: config.check_interval,
            checked: Mutex::new(now.checked_sub(config.check_interval).unwrap_or(now)),
            refusing: AtomicBool::new(false),
            last: AtomicU64::new(0),
            probe,
        }
    }

    fn measure(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < self.interval {
                return;
            }
            *checked = Instant::now();
        }
        let used = (self.probe)();
        self.last.store(used, Ordering::Relaxed);
        let was = self.refusing.swap(used > self.soft, Ordering::Relaxed);
        if used > self.soft && !was {
            warn!(
                used_mib = used / MIB,
                soft_limit_mib = self.soft / MIB,
                hard_limit_mib = self.hard / MIB,
                "memory over the soft limit: refusing data"
            );
        } else if used <= self.soft && was {
            warn!(
                used_mib = used / MIB,
                "memory back under the soft limit: accepting data"
            );
        }
    }
}

impl Admission for Limiter {
    fn admit(&self, bytes: usize) -> Result<(), String> {
        self.measure();
        // A request that would itself cross the hard limit is refused even between checks.
        // `bytes` may be a client's Content-Length: any number at all.
        let projected = self
            .last
            .load(Ordering::Relaxed)
            .saturating_add((bytes as u64).saturating_mul(2));
        if self.refusing.load(Ordering::Relaxed) || projected > self.hard {
            return Err(format!(
                "memory limiter: {} MiB in use, soft limit {} MiB; retry later",
                self.last.load(Ordering::Relaxed) / MIB,
                self.soft / MIB
            ));
        }
        Ok(())
    }
}

pub struct MemoryLimiter;

impl ComponentType for MemoryLimiter {
    const TYPE_NAME: &'static str = "memory_limiter";
    type Config = MemoryLimiterConfig;
}

impl ProcessorType for MemoryLimiter {
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(_: &BuildContext, config: MemoryLimiterConfig) -> Result<Box<dyn Processor>, BoxError> {
        Ok(Box::new(AtAdmission {
            limiter: Arc::new(Limiter::new(&config, heap_bytes)),
        }))
    }
}

/// In the pipeline it passes data through; its work is done at admission.
struct AtAdmission {
    limiter: Arc<Limiter>,
}

impl Processor for AtAdmission {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        out.push(batch);
    }

    fn admission(&self) -> Option<Arc<dyn Admission>> {
        Some(self.limiter.clone())
    }

    /// Its work is all at admission; data passes straight through.
    fn runs_inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    static USED: AtomicU64 = AtomicU64::new(0);

    fn fake() -> u64 {
        USED.load(Ordering::Relaxed)
    }

    #[test]
    fn refuses_above_the_soft_limit_and_recovers() {
        let config = MemoryLimiterConfig {
            check_interval: Duration::from_millis(1),
            limit_mib: 100,
            spike_limit_mib: 20,
            ..Default::default()
        };
        let limiter = Limiter::new(&config, fake);
        assert_eq!((limiter.soft, limiter.hard), (80 * MIB, 100 * MIB));
        USED.store(50 * MIB, Ordering::Relaxed);
        assert!(limiter.admit(1000).is_ok());
        USED.store(85 * MIB, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        let refused = limiter.admit(1000).expect_err("over the soft limit");
        assert!(refused.contains("memory limiter"), "{refused}");
        USED.store(40 * MIB, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        assert!(limiter.admit(1000).is_ok());
        // A single request that would cross the hard limit is refused outright.
        assert!(limiter.admit(40 * MIB as usize).is_err());
        // Whatever size a client declares.
        assert!(limiter.admit(usize::MAX).is_err());
    }

    #[test]
    fn config_rules() {
        let check = |y: &str| hotspan_config::yaml_errors::<MemoryLimiterConfig>(y);
        assert_eq!(check("{limit_mib: 512, spike_limit_mib: 128}"), vec![]);
        assert_eq!(check("{}")[0].path, "limit_mib");
        assert_eq!(
            check("{limit_mib: 100, spike_limit_mib: 100}")[0].path,
            "spike_limit_mib"
        );
        // As otelcol: both may be set, and limit_mib wins; the GC pacing keys load.
        assert_eq!(
            check("{limit_mib: 100, limit_percentage: 50, min_gc_interval_when_soft_limited: 10s, max_gc_interval_when_hard_limited: 1m}"),
            vec![]
        );
        let both: MemoryLimiterConfig =
            hotspan_config::parse_yaml("{limit_mib: 100, limit_percentage: 50}").expect("parses");
        assert_eq!(both.limits(1000 * 1024 * MIB), (80 * MIB, 100 * MIB));
        assert_eq!(
            check("{limit_percentage: 80, spike_limit_percentage: 20, check_interval: 0s}")[0].path,
            "check_interval"
        );
        assert_eq!(check("{limit_mib: 1073741824}"), vec![]);
        let over = check("{limit_mib: 1073741825, spike_limit_percentage: 101, check_interval: 1m0.001s}");
        let over: Vec<String> = over.iter().map(ToString::to_string).collect();
        assert_eq!(
            over,
            [
                "check_interval: must be greater than 0s and at most 1m0s",
                "limit_mib: must be from 0 to 1073741824",
                "spike_limit_percentage: must be from 0 to 100"
            ]
        );
        let spike = check("{limit_percentage: 50, spike_limit_mib: 18446744073709551615}");
        assert_eq!(
            spike[0].to_string(),
            "spike_limit_mib: must be from 0 to 1073741824"
        );
        let pct = MemoryLimiterConfig {
            limit_percentage: 50,
            spike_limit_percentage: 10,
            ..Default::default()
        };
        assert_eq!(pct.limits(1000 * MIB), (400 * MIB, 500 * MIB));
    }
}
