//! What a component is to the runtime: factories that check and build, and the lifecycle of
//! what they build. Adding a component is its module plus one line in `registry.rs`.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use hotspan_config::{ComponentId, FieldError, Kind, Signal};
use hotspan_proto::Batch;

use crate::consumer::{Consumer, SignalConsumers};
use crate::exporters::{ExportError, QueueConfig, RetryConfig};
use crate::telemetry::Telemetry;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Extensions built so far, for components that use one (a queue's storage, an authenticator).
#[derive(Default)]
pub struct Extensions {
    services: BTreeMap<ComponentId, Arc<dyn Any + Send + Sync>>,
}

impl Extensions {
    pub fn insert(&mut self, id: ComponentId, service: Arc<dyn Any + Send + Sync>) {
        self.services.insert(id, service);
    }

    /// The extension `id` as what it offers, or a clear error when it is missing (not under
    /// `service.extensions`) or of another kind.
    pub fn get<T: Any + Send + Sync>(&self, id: &ComponentId, what: &str) -> Result<Arc<T>, BoxError> {
        let service = self.services.get(id).ok_or_else(|| {
            format!("extension \"{id}\" is not enabled: define it and list it in service.extensions")
        })?;
        service
            .clone()
            .downcast::<T>()
            .map_err(|_| format!("extension \"{id}\" is not a {what}").into())
    }
}

/// What every component gets when it is built.
pub struct BuildContext<'a> {
    pub kind: Kind,
    pub id: &'a ComponentId,
    pub telemetry: &'a Arc<Telemetry>,
    pub extensions: &'a Extensions,
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

/// A built extension: its lifecycle, and what it offers other components (found through
/// [`Extensions::get`] by its concrete type).
pub struct BuiltExtension {
    pub lifecycle: Arc<dyn Lifecycle>,
    pub service: Arc<dyn Any + Send + Sync>,
}

impl BuiltExtension {
    /// For an extension that is its own service.
    pub fn of<T: Lifecycle + Any + Send + Sync>(extension: Arc<T>) -> Self {
        BuiltExtension {
            lifecycle: extension.clone(),
            service: extension,
        }
    }
}

pub trait ExtensionFactory: Sync {
    fn type_name(&self) -> &'static str;
    fn check(&self, config: &serde_yaml::Value) -> Vec<FieldError>;
    fn build(&self, ctx: &BuildContext, config: &serde_yaml::Value) -> Result<BuiltExtension, BoxError>;
}
