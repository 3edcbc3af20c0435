//! The collector's own telemetry: metrics it keeps about itself, its status, and log setup.

mod logs;
mod metrics;
mod process;

pub use logs::init_logging;
pub use metrics::{Counter, Follower, Gauge, Metrics};

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

/// Shared by every component: where they count, and whether the service is serving.
pub struct Telemetry {
    pub metrics: Metrics,
    status: AtomicU8,
    started: Instant,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            metrics: Metrics::default(),
            status: AtomicU8::new(0),
            started: Instant::now(),
        }
    }
}

/// The service's phase, as the health check reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Starting = 0,
    Running = 1,
    Stopping = 2,
}

impl Telemetry {
    pub fn status(&self) -> Status {
        match self.status.load(Ordering::Acquire) {
            1 => Status::Running,
            2 => Status::Stopping,
            _ => Status::Starting,
        }
    }

    pub fn set_status(&self, status: Status) {
        self.status.store(status as u8, Ordering::Release);
    }

    /// Everything in Prometheus text: the components' metrics and the process's.
    pub fn render(&self) -> String {
        let mut out = self.metrics.render();
        process::render(&mut out, self.started);
        out
    }
}
