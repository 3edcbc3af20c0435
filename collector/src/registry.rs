//! Every component hotspan has, one line each. This is the only list to touch when adding one.

use hotspan_config::{Catalog, ComponentInfo, FieldError, Kind};
use hotspan_processors::ProcessorFactory;

use crate::component::{ConnectorFactory, ExporterFactory, ExtensionFactory, ReceiverFactory};
use crate::{connectors, exporters, extensions, receivers};

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
                &receivers::otlp::Factory,
                &receivers::pprof::Factory,
                &receivers::pprof_scrape::Factory,
            ],
            processors: vec![
                &hotspan_processors::batch::Factory,
                &crate::processors::memory_limiter::Factory,
            ],
            exporters: vec![
                &exporters::otlp_grpc::Factory,
                &exporters::otlp_http::Factory,
                &exporters::file::Factory,
                &exporters::debug::Factory,
                &exporters::load_balancing::Factory,
                &extensions::hotspan_ui::UiExporterFactory,
            ],
            connectors: vec![&connectors::forward::Factory, &connectors::spanprofile::Factory],
            extensions: vec![
                &extensions::bearertokenauth::Factory,
                &extensions::health_check::Factory,
                &extensions::file_storage::Factory,
                &extensions::hotspan_ui::Factory,
            ],
        }
    }
}

/// Finds a factory by type name or alias.
fn find<F: ?Sized>(
    list: &[&'static F],
    type_name: &str,
    names: impl Fn(&F) -> (&'static str, &'static [&'static str]),
) -> Option<&'static F> {
    list.iter().copied().find(|f| {
        let (name, aliases) = names(f);
        name == type_name || aliases.contains(&type_name)
    })
}

impl Registry {
    pub fn receiver(&self, t: &str) -> Option<&'static dyn ReceiverFactory> {
        find(&self.receivers, t, |f| (f.type_name(), f.aliases()))
    }
    pub fn processor(&self, t: &str) -> Option<&'static dyn ProcessorFactory> {
        find(&self.processors, t, |f| (f.type_name(), f.aliases()))
    }
    pub fn exporter(&self, t: &str) -> Option<&'static dyn ExporterFactory> {
        find(&self.exporters, t, |f| (f.type_name(), f.aliases()))
    }
    pub fn connector(&self, t: &str) -> Option<&'static dyn ConnectorFactory> {
        find(&self.connectors, t, |f| (f.type_name(), f.aliases()))
    }
    pub fn extension(&self, t: &str) -> Option<&'static dyn ExtensionFactory> {
        find(&self.extensions, t, |f| (f.type_name(), &[]))
    }
}

impl Catalog for Registry {
    fn component(&self, kind: Kind, t: &str) -> Option<ComponentInfo> {
        match kind {
            Kind::Receiver => self
                .receiver(t)
                .map(|f| ComponentInfo::Signals(f.signals().to_vec())),
            Kind::Processor => self
                .processor(t)
                .map(|f| ComponentInfo::Signals(f.signals().to_vec())),
            Kind::Exporter => self
                .exporter(t)
                .map(|f| ComponentInfo::Signals(f.signals().to_vec())),
            Kind::Connector => self
                .connector(t)
                .map(|f| ComponentInfo::Connector(f.pairs().to_vec())),
            Kind::Extension => self.extension(t).map(|_| ComponentInfo::Extension),
        }
    }

    fn check(&self, kind: Kind, t: &str, config: &serde_yaml::Value) -> Vec<FieldError> {
        let checked = match kind {
            Kind::Receiver => self.receiver(t).map(|f| f.check(config)),
            Kind::Processor => self.processor(t).map(|f| f.check(config)),
            Kind::Exporter => self.exporter(t).map(|f| f.check(config)),
            Kind::Connector => self.connector(t).map(|f| f.check(config)),
            Kind::Extension => self.extension(t).map(|f| f.check(config)),
        };
        checked.unwrap_or_default()
    }
}
