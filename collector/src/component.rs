//! What a component is to the runtime: a type with a config struct and a `build`, and the
//! lifecycle of what it builds. Adding a component is its module plus one line in
//! `registry.rs`; the generic factories here parse its config once, at load, and hand the
//! parsed struct to its `build`.

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use hotspan_config::{
    check_component, Checked, ComponentConfig, ComponentId, ComponentInfo, ComponentValue, FieldError, Kind,
    Parsed, Signal,
};
use hotspan_processors::Processor;
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
    /// On a reload, what the component of the same id and config in the service being
    /// replaced handed over ([`Lifecycle::carry_over`]), for the new one to carry on with.
    pub carried: Option<Arc<dyn std::any::Any + Send + Sync>>,
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
    /// On a reload that rebuilds this component with the same config: state its successor
    /// takes over instead of this one draining it at shutdown (a join's held spans). The
    /// successor gets it as [`BuildContext::carried`].
    fn carry_over(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        None
    }
}

/// A component that is handed batches: an exporter behind its queue, or a connector.
pub trait ConsumerComponent: Consumer + Lifecycle {}
impl<T: Consumer + Lifecycle> ConsumerComponent for T {}

/// Sends one batch to one destination, once. Queueing and retrying are the runtime's.
#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    async fn start(&self) -> Result<(), BoxError> {
        Ok(())
    }
    async fn export(&self, batch: &Batch) -> Result<(), ExportError>;
    /// Shutdown began. An exporter that retries inside itself, not through the runtime's
    /// retry, stops waiting to retry as the runtime would: at once when `keep` (the runtime
    /// keeps the batch, on disk or for a reloaded successor), else no later than `deadline`.
    fn begin_shutdown(&self, _deadline: std::time::Instant, _keep: bool) {}
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

/// A component type: its name, aliases and config struct. One of the kind traits below says
/// how it is built.
pub trait ComponentType: Sync + 'static {
    const TYPE_NAME: &'static str;
    const ALIASES: &'static [&'static str] = &[];
    /// Parsed and validated once, when the config is loaded.
    type Config: ComponentConfig + Clone + Send + Sync + 'static;
}

pub trait ReceiverType: ComponentType {
    const SIGNALS: &'static [Signal];
    fn build(
        ctx: &BuildContext,
        config: Self::Config,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError>;
}

pub trait ProcessorType: ComponentType {
    const SIGNALS: &'static [Signal];
    fn build(ctx: &BuildContext, config: Self::Config) -> Result<Box<dyn Processor>, BoxError>;
}

pub trait ExporterType: ComponentType {
    const SIGNALS: &'static [Signal];
    fn build(ctx: &BuildContext, config: Self::Config) -> Result<BuiltExporter, BoxError>;
}

pub trait ConnectorType: ComponentType {
    /// (signal it consumes as an exporter, signal it emits as a receiver)
    const PAIRS: &'static [(Signal, Signal)];
    fn build(
        ctx: &BuildContext,
        config: Self::Config,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BoxError>;
}

pub trait ExtensionType: ComponentType {
    fn build(ctx: &BuildContext, config: Self::Config) -> Result<BuiltExtension, BoxError>;
}

/// What the registry, `validate` and `hotspan components` need of any component type.
pub trait Factory: Sync {
    fn type_name(&self) -> &'static str;
    fn aliases(&self) -> &'static [&'static str];
    fn info(&self) -> ComponentInfo;
    /// Parses and validates a config, once: the parsed struct goes to `build`.
    fn check(&self, config: &ComponentValue) -> Result<Checked, Vec<FieldError>>;
}

pub trait ReceiverFactory: Factory {
    fn build(
        &self,
        ctx: &BuildContext,
        config: &Parsed,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError>;
}

pub trait ProcessorFactory: Factory {
    fn build(&self, ctx: &BuildContext, config: &Parsed) -> Result<Box<dyn Processor>, BoxError>;
}

pub trait ExporterFactory: Factory {
    fn build(&self, ctx: &BuildContext, config: &Parsed) -> Result<BuiltExporter, BoxError>;
}

pub trait ConnectorFactory: Factory {
    fn build(
        &self,
        ctx: &BuildContext,
        config: &Parsed,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BoxError>;
}

pub trait ExtensionFactory: Factory {
    fn build(&self, ctx: &BuildContext, config: &Parsed) -> Result<BuiltExtension, BoxError>;
}

/// The factory of component type `T` as a `K` (receiver, exporter, ...): one generic
/// implementation of parsing, checking and handing the parsed config to `T::build`.
pub struct Typed<T, K>(PhantomData<fn() -> (T, K)>);

/// Markers for [`Typed`]'s kind.
pub struct AsReceiver;
pub struct AsProcessor;
pub struct AsExporter;
pub struct AsConnector;
pub struct AsExtension;

/// The parsed config as `T::Config`. It was checked by this same type at load, so another
/// type here means a config built outside `load` — an error, not a panic.
fn config_of<T: ComponentType>(parsed: &Parsed) -> Result<T::Config, BoxError> {
    parsed
        .get::<T::Config>()
        .cloned()
        .ok_or_else(|| format!("{}: config was not checked by this component type", T::TYPE_NAME).into())
}

macro_rules! factory {
    ($kind:ident, $trait:ident, $info:expr) => {
        impl<T: $trait> Factory for Typed<T, $kind> {
            fn type_name(&self) -> &'static str {
                T::TYPE_NAME
            }
            fn aliases(&self) -> &'static [&'static str] {
                T::ALIASES
            }
            fn info(&self) -> ComponentInfo {
                $info
            }
            fn check(&self, config: &ComponentValue) -> Result<Checked, Vec<FieldError>> {
                check_component::<T::Config>(config)
            }
        }
    };
}

factory!(
    AsReceiver,
    ReceiverType,
    ComponentInfo::Signals(T::SIGNALS.to_vec())
);
factory!(
    AsProcessor,
    ProcessorType,
    ComponentInfo::Signals(T::SIGNALS.to_vec())
);
factory!(
    AsExporter,
    ExporterType,
    ComponentInfo::Signals(T::SIGNALS.to_vec())
);
factory!(
    AsConnector,
    ConnectorType,
    ComponentInfo::Connector(T::PAIRS.to_vec())
);
factory!(AsExtension, ExtensionType, ComponentInfo::Extension);

impl<T: ReceiverType> ReceiverFactory for Typed<T, AsReceiver> {
    fn build(
        &self,
        ctx: &BuildContext,
        config: &Parsed,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError> {
        T::build(ctx, config_of::<T>(config)?, next)
    }
}

impl<T: ProcessorType> ProcessorFactory for Typed<T, AsProcessor> {
    fn build(&self, ctx: &BuildContext, config: &Parsed) -> Result<Box<dyn Processor>, BoxError> {
        T::build(ctx, config_of::<T>(config)?)
    }
}

impl<T: ExporterType> ExporterFactory for Typed<T, AsExporter> {
    fn build(&self, ctx: &BuildContext, config: &Parsed) -> Result<BuiltExporter, BoxError> {
        T::build(ctx, config_of::<T>(config)?)
    }
}

impl<T: ConnectorType> ConnectorFactory for Typed<T, AsConnector> {
    fn build(
        &self,
        ctx: &BuildContext,
        config: &Parsed,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BoxError> {
        T::build(ctx, config_of::<T>(config)?, next)
    }
}

impl<T: ExtensionType> ExtensionFactory for Typed<T, AsExtension> {
    fn build(&self, ctx: &BuildContext, config: &Parsed) -> Result<BuiltExtension, BoxError> {
        T::build(ctx, config_of::<T>(config)?)
    }
}

pub const fn receiver<T: ReceiverType>() -> &'static dyn ReceiverFactory {
    &Typed::<T, AsReceiver>(PhantomData)
}
pub const fn processor<T: ProcessorType>() -> &'static dyn ProcessorFactory {
    &Typed::<T, AsProcessor>(PhantomData)
}
pub const fn exporter<T: ExporterType>() -> &'static dyn ExporterFactory {
    &Typed::<T, AsExporter>(PhantomData)
}
pub const fn connector<T: ConnectorType>() -> &'static dyn ConnectorFactory {
    &Typed::<T, AsConnector>(PhantomData)
}
pub const fn extension<T: ExtensionType>() -> &'static dyn ExtensionFactory {
    &Typed::<T, AsExtension>(PhantomData)
}
