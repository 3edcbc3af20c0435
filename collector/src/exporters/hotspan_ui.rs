//! The `hotspan_ui` exporter: hands annotated spans to the `hotspan_ui` extension's live page.

use std::sync::Arc;

use async_trait::async_trait;
use hotspan_config::{ComponentConfig, ComponentId, ExtensionRef, Signal};
use hotspan_proto::Batch;
use serde::Deserialize;

use crate::component::{BoxError, BuildContext, BuiltExporter, ComponentType, Exporter, ExporterType};
use crate::exporters::ExportError;
use crate::extensions::hotspan_ui::{HotspanUi, SpanSink};

/// The `hotspan_ui` exporter's config: which extension gets the spans.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HotspanUiExporterConfig {
    pub extension: String,
}

impl Default for HotspanUiExporterConfig {
    fn default() -> Self {
        HotspanUiExporterConfig {
            extension: "hotspan_ui".into(),
        }
    }
}

impl ComponentConfig for HotspanUiExporterConfig {
    fn extensions(&self) -> Vec<ExtensionRef> {
        vec![ExtensionRef {
            path: "extension".into(),
            id: self.extension.clone(),
            type_name: HotspanUi::TYPE_NAME,
        }]
    }
}

impl ComponentType for UiExporter {
    const TYPE_NAME: &'static str = "hotspan_ui";
    type Config = HotspanUiExporterConfig;
}

impl ExporterType for UiExporter {
    const SIGNALS: &'static [Signal] = &[Signal::Traces];

    fn build(ctx: &BuildContext, config: HotspanUiExporterConfig) -> Result<BuiltExporter, BoxError> {
        let id: ComponentId = config.extension.parse()?;
        let ui = ctx.extensions.get::<HotspanUi>(&id, "hotspan_ui extension")?;
        Ok(BuiltExporter::direct(UiExporter { sink: ui.sink() }))
    }
}

/// The exporter that feeds the page.
pub struct UiExporter {
    sink: Arc<SpanSink>,
}

#[async_trait]
impl Exporter for UiExporter {
    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        if let Batch::Traces(traces) = batch {
            self.sink.record(traces);
        }
        Ok(())
    }
}
