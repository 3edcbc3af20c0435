//! What a component is to the runtime: factories that check and build, and the lifecycle of
//! what they build. Adding a component is its module plus one line in `registry.rs`.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use hotspan_config::{ComponentId, FieldError, Kind, Signal};
use hotspan_proto::Batch;

use crate::consumer::{Consumer, SignalConsumers};
use crate::exporters::{ExportError, QueueConfig, RetryConfig};
use crate::telemetry::Telemetry;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every component gets when it is built.
pub struct BuildContext<'a> {
    pub kind: Kind,
    pub id: &'a ComponentId,
    pub telemetry: &'a Arc<Telemetry>,
}

impl BuildContext<'_> {
    /// The name metrics and logs use for this component, e.g. `otlp/in`.
    pub fn name(&self) -> String {
        self.id.to_string()
    }
}

/// Start and stop. Start binds and spawns; shutdown stops taking new work, finishes what was
/// taken, and returns by `deadline`.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    async fn start(&self) -> Result<(), BoxError> {
        Ok(())
    }
    async fn shutdown(&self, _deadline: Instant) {}
}

/// A component that is handed batches: an exporter behind its queue, or a connector.
pub trait ConsumerComponent: Consumer + Lifecycle {}
impl<T: Consumer + Lifecycle> ConsumerComponent for T {}

pub trait ReceiverFactory: Sync {
    fn type_name(&self) -> &'static str;
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    fn signals(&self) -> &'static [Signal];
    fn check(&self, config: &serde_yaml::Value) -> Vec<FieldError>;
    fn build(
        &self,
        ctx: &BuildContext,
        config: &serde_yaml::Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError>;
}

/// Sends one batch to one destination, once. Queueing and retrying are the runtime's.
#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    async fn start(&self) -> Result<(), BoxError> {
        Ok(())
    }
    async fn export(&self, batch: &Batch) -> Result<(), ExportError>;
    /// Flush whatever the exporter buffers itself (files, connections).
    async fn shutdown(&self) {}
}

/// An exporter and how the runtime should queue and retry for it.
pub struct BuiltExporter {
    pub exporter: Arc<dyn Exporter>,
    pub queue: QueueConfig,
    pub retry: RetryConfig,
}

impl BuiltExporter {
    /// For exporters that write locally: no queue, no retry.
    pub fn direct(exporter: impl Exporter) -> Self {
        BuiltExporter {
            exporter: Arc::new(exporter),
            queue: QueueConfig::disabled(),
            retry: RetryConfig::disabled(),
        }
    }
}

pub trait ExporterFactory: Sync {
    fn type_name(&self) -> &'static str;
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    fn signals(&self) -> &'static [Signal];
    fn check(&self, config: &serde_yaml::Value) -> Vec<FieldError>;
    fn build(&self, ctx: &BuildContext, config: &serde_yaml::Value) -> Result<BuiltExporter, BoxError>;
}

pub trait ConnectorFactory: Sync {
    fn type_name(&self) -> &'static str;
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// (signal it consumes as an exporter, signal it emits as a receiver)
    fn pairs(&self) -> &'static [(Signal, Signal)];
    fn check(&self, config: &serde_yaml::Value) -> Vec<FieldError>;
    fn build(
        &self,
        ctx: &BuildContext,
        config: &serde_yaml::Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BoxError>;
}

pub trait ExtensionFactory: Sync {
    fn type_name(&self) -> &'static str;
    fn check(&self, config: &serde_yaml::Value) -> Vec<FieldError>;
    fn build(&self, ctx: &BuildContext, config: &serde_yaml::Value) -> Result<Arc<dyn Lifecycle>, BoxError>;
}
