//! Every component hotspan has, one line each. This is the only list to touch when adding one.

use hotspan_config::{Catalog, Checked, ComponentInfo, ComponentValue, FieldError, Kind};

use crate::component::{
    connector, exporter, extension, processor, receiver, ConnectorFactory, ExporterFactory, ExtensionFactory,
    Factory, ProcessorFactory, ReceiverFactory,
};
use crate::{connectors, exporters, extensions, processors, receivers};

pub struct Registry {
    pub receivers: Vec<&'static dyn ReceiverFactory>,
    pub processors: Vec<&'static dyn ProcessorFactory>,
    pub exporters: Vec<&'static dyn ExporterFactory>,
    pub connectors: Vec<&'static dyn ConnectorFactory>,
    pub extensions: Vec<&'static dyn ExtensionFactory>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            receivers: vec![
                receiver::<receivers::otlp::OtlpReceiver>(),
                receiver::<receivers::pprof::PprofReceiver>(),
                receiver::<receivers::pprof_scrape::PprofScrape>(),
                receiver::<receivers::cgroup::CgroupReceiver>(),
                receiver::<receivers::kafka::KafkaReceiver>(),
            ],
            processors: vec![
                processor::<processors::batch::Batch>(),
                processor::<processors::memory_limiter::MemoryLimiter>(),
                processor::<processors::tail_sampling::TailSampling>(),
            ],
            exporters: vec![
                exporter::<exporters::otlp_grpc::OtlpGrpcExporter>(),
                exporter::<exporters::otlp_http::OtlpHttpExporter>(),
                exporter::<exporters::file::FileExporter>(),
                exporter::<exporters::debug::DebugExporter>(),
                exporter::<exporters::load_balancing::LoadBalancingExporter>(),
                exporter::<exporters::hotspan_ui::UiExporter>(),
                exporter::<exporters::kafka::KafkaExporter>(),
            ],
            connectors: vec![
                connector::<connectors::forward::Forward>(),
                connector::<connectors::spanprofile::SpanProfile>(),
            ],
            extensions: vec![
                extension::<extensions::bearertokenauth::BearerTokenAuth>(),
                extension::<extensions::health_check::HealthCheck>(),
                extension::<extensions::file_storage::FileStorage>(),
                extension::<extensions::hotspan_ui::HotspanUi>(),
            ],
        }
    }
}

/// Finds a factory by type name or alias.
fn find<F: ?Sized + Factory>(list: &[&'static F], type_name: &str) -> Option<&'static F> {
    list.iter()
        .copied()
        .find(|f| f.type_name() == type_name || f.aliases().contains(&type_name))
}

impl Registry {
    pub fn receiver(&self, t: &str) -> Option<&'static dyn ReceiverFactory> {
        find(&self.receivers, t)
    }
    pub fn processor(&self, t: &str) -> Option<&'static dyn ProcessorFactory> {
        find(&self.processors, t)
    }
    pub fn exporter(&self, t: &str) -> Option<&'static dyn ExporterFactory> {
        find(&self.exporters, t)
    }
    pub fn connector(&self, t: &str) -> Option<&'static dyn ConnectorFactory> {
        find(&self.connectors, t)
    }
    pub fn extension(&self, t: &str) -> Option<&'static dyn ExtensionFactory> {
        find(&self.extensions, t)
    }

    /// Every component type, kind by kind in config-file order, as what every factory offers.
    pub fn all(&self) -> Vec<(Kind, &'static dyn Factory)> {
        let mut all: Vec<(Kind, &'static dyn Factory)> = Vec::new();
        all.extend(
            self.receivers
                .iter()
                .map(|f| (Kind::Receiver, *f as &dyn Factory)),
        );
        all.extend(
            self.processors
                .iter()
                .map(|f| (Kind::Processor, *f as &dyn Factory)),
        );
        all.extend(
            self.exporters
                .iter()
                .map(|f| (Kind::Exporter, *f as &dyn Factory)),
        );
        all.extend(
            self.connectors
                .iter()
                .map(|f| (Kind::Connector, *f as &dyn Factory)),
        );
        all.extend(
            self.extensions
                .iter()
                .map(|f| (Kind::Extension, *f as &dyn Factory)),
        );
        all
    }

    /// Any component type of `kind`, as what every factory offers.
    fn factory(&self, kind: Kind, t: &str) -> Option<&'static dyn Factory> {
        match kind {
            Kind::Receiver => self.receiver(t).map(|f| f as &dyn Factory),
            Kind::Processor => self.processor(t).map(|f| f as &dyn Factory),
            Kind::Exporter => self.exporter(t).map(|f| f as &dyn Factory),
            Kind::Connector => self.connector(t).map(|f| f as &dyn Factory),
            Kind::Extension => self.extension(t).map(|f| f as &dyn Factory),
        }
    }
}

impl Catalog for Registry {
    fn component(&self, kind: Kind, t: &str) -> Option<ComponentInfo> {
        self.factory(kind, t).map(|f| f.info())
    }

    fn check(&self, kind: Kind, t: &str, config: &ComponentValue) -> Result<Checked, Vec<FieldError>> {
        match self.factory(kind, t) {
            Some(f) => f.check(config),
            None => Err(vec![FieldError::new("", format!("unknown {kind} type {t:?}"))]),
        }
    }
}
