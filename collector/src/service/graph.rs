//! Builds the pipeline graph back to front: each component is handed its `next`. On a reload,
//! extensions, exporters and receivers whose config did not change are taken over from the
//! running service instead of built again, so their state (a sending queue, a live page, a
//! client's open connection) carries on; a kept receiver's [`Switch`]es are re-pointed to the
//! new pipelines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hotspan_config::{ComponentId, ComponentSettings, Config, Kind, PipelineId, Signal};

use super::inline::Inline;
use super::stage::Stage;
use super::Node;
use crate::component::{BoxError, BuildContext, ConsumerComponent, Extensions, Lifecycle};
use crate::consumer::{Fanout, SharedConsumer, SignalConsumers, Switch};
use crate::exporterhelper::ExporterRuntime;
use crate::registry::Registry;
use crate::telemetry::Telemetry;

/// A built extension, kept so a reload can take it over.
#[derive(Clone)]
pub(super) struct ExtensionPart {
    pub settings: ComponentSettings,
    pub lifecycle: Arc<dyn Lifecycle>,
    pub service: Arc<dyn std::any::Any + Send + Sync>,
}

/// A built exporter with what decides whether a reload may keep it.
#[derive(Clone)]
pub(super) struct ExporterPart {
    pub settings: ComponentSettings,
    pub signals: Vec<Signal>,
    pub runtime: Arc<ExporterRuntime>,
}

/// A built connector and its config: a reload that rebuilds it with the same config lets the
/// new one carry on with what it holds ([`Lifecycle::carry_over`]).
#[derive(Clone)]
pub(super) struct ConnectorPart {
    pub settings: ComponentSettings,
    pub component: Arc<dyn ConsumerComponent>,
}

/// A built receiver and the switches between it and each signal's pipelines.
#[derive(Clone)]
pub(super) struct ReceiverPart {
    pub settings: ComponentSettings,
    pub lifecycle: Arc<dyn Lifecycle>,
    pub switches: Vec<(Signal, Arc<Switch>)>,
}

/// What a reload may take over from the running service.
#[derive(Default)]
pub(super) struct Reusable {
    pub extensions: BTreeMap<ComponentId, ExtensionPart>,
    pub exporters: BTreeMap<ComponentId, ExporterPart>,
    pub receivers: BTreeMap<ComponentId, ReceiverPart>,
    pub connectors: BTreeMap<ComponentId, ConnectorPart>,
}

pub(super) struct Graph {
    pub extensions: Vec<Node>,
    pub receivers: Vec<Node>,
    pub middle: Vec<Node>,
    pub exporters: Vec<Node>,
    /// Everything reusable by the next reload, this graph's own and what it took over.
    pub parts: Reusable,
    /// Switches of receivers taken over, with the pipeline each is to lead into once this
    /// graph runs.
    pub repoint: Vec<(Arc<Switch>, SharedConsumer)>,
}

struct Builder<'a> {
    config: &'a Config,
    registry: &'a Registry,
    telemetry: &'a Arc<Telemetry>,
    exporters: BTreeMap<ComponentId, ExporterPart>,
    /// Exporters taken over from the running service.
    kept: BTreeSet<ComponentId>,
    previous: Option<&'a Reusable>,
    connectors: BTreeMap<ComponentId, ConnectorPart>,
    heads: BTreeMap<PipelineId, SharedConsumer>,
    /// Stages and connectors in creation order, which is downstream first.
    created: Vec<Node>,
    extensions: &'a Extensions,
    /// Extensions taken over from the running service.
    kept_extensions: &'a BTreeSet<ComponentId>,
}

fn unknown(kind: Kind, id: &ComponentId) -> BoxError {
    format!("{kind} type \"{}\" is not known", id.type_name).into()
}

/// Builds `config`'s graph; with `previous` (a reload), takes over the extensions and
/// exporters whose settings are unchanged (exporters also need the same signals, and every
/// extension they use taken over too).
pub(super) fn build(
    config: &Config,
    registry: &Registry,
    telemetry: &Arc<Telemetry>,
    previous: Option<&Reusable>,
) -> Result<Graph, BoxError> {
    // Extensions first: exporters and receivers may use them (storage, authentication).
    let mut extensions = Vec::new();
    let mut services = Extensions::default();
    let mut extension_parts = BTreeMap::new();
    let mut kept_extensions = BTreeSet::new();
    for id in &config.service.extensions {
        let settings = &config.extensions[id];
        let old = previous
            .and_then(|p| p.extensions.get(id))
            .filter(|old| old.settings == *settings);
        let part = match old {
            Some(old) => {
                kept_extensions.insert(id.clone());
                old.clone()
            }
            None => {
                let factory = registry
                    .extension(&id.type_name)
                    .ok_or_else(|| unknown(Kind::Extension, id))?;
                let ctx = BuildContext {
                    kind: Kind::Extension,
                    id,
                    telemetry,
                    extensions: &services,
                    carried: None,
                };
                let built = factory
                    .build(&ctx, &settings.parsed)
                    .map_err(|e| format!("extensions.{id}: {e}"))?;
                ExtensionPart {
                    settings: settings.clone(),
                    lifecycle: built.lifecycle,
                    service: built.service,
                }
            }
        };
        services.insert(id.clone(), part.service.clone());
        let mut node = Node::new("extension", id.to_string(), part.lifecycle.clone());
        node.kept = kept_extensions.contains(id);
        extensions.push(node);
        extension_parts.insert(id.clone(), part);
    }
    let mut b = Builder {
        config,
        registry,
        telemetry,
        exporters: BTreeMap::new(),
        kept: BTreeSet::new(),
        previous,
        connectors: BTreeMap::new(),
        heads: BTreeMap::new(),
        created: Vec::new(),
        extensions: &services,
        kept_extensions: &kept_extensions,
    };
    let mut receivers = Vec::new();
    let receiver_ids: BTreeSet<&ComponentId> = config
        .service
        .pipelines
        .values()
        .flat_map(|p| &p.receivers)
        .filter(|id| config.receivers.contains_key(id))
        .collect();
    let mut receiver_parts = BTreeMap::new();
    let mut repoint = Vec::new();
    for id in receiver_ids {
        let next = b.outputs_of(id)?;
        let settings = &config.receivers[id];
        let signals: BTreeSet<Signal> = next.signals().collect();
        let unchanged = |old: &&ReceiverPart| {
            old.settings == *settings
                && old.switches.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>() == signals
                && b.uses_kept_extensions(settings)
        };
        let (part, kept) = match previous.and_then(|p| p.receivers.get(id)).filter(unchanged) {
            Some(old) => {
                for (signal, switch) in &old.switches {
                    if let Some(head) = next.get(*signal) {
                        repoint.push((switch.clone(), head.clone()));
                    }
                }
                (old.clone(), true)
            }
            None => {
                let factory = registry
                    .receiver(&id.type_name)
                    .ok_or_else(|| unknown(Kind::Receiver, id))?;
                let ctx = BuildContext {
                    kind: Kind::Receiver,
                    id,
                    telemetry,
                    extensions: &services,
                    carried: None,
                };
                let mut switched = SignalConsumers::default();
                let mut switches = Vec::new();
                for signal in signals {
                    if let Some(head) = next.get(signal) {
                        let switch = Switch::new(head.clone());
                        switched.insert(signal, switch.clone());
                        switches.push((signal, switch));
                    }
                }
                let lifecycle = factory
                    .build(&ctx, &settings.parsed, switched)
                    .map_err(|e| format!("receivers.{id}: {e}"))?;
                let part = ReceiverPart {
                    settings: settings.clone(),
                    lifecycle,
                    switches,
                };
                (part, false)
            }
        };
        let mut node = Node::new("receiver", id.to_string(), part.lifecycle.clone());
        node.kept = kept;
        receivers.push(node);
        receiver_parts.insert(id.clone(), part);
    }
    // Pipelines fed only by connectors were built on the way; any left over have no input.
    for pid in config.service.pipelines.keys() {
        b.head(pid)?;
    }
    let exporters = b
        .exporters
        .iter()
        .map(|(id, e)| {
            let mut node = Node::new(
                "exporter",
                id.to_string(),
                e.runtime.clone() as Arc<dyn Lifecycle>,
            );
            node.kept = b.kept.contains(id);
            node
        })
        .collect();
    let mut middle = b.created;
    middle.reverse();
    Ok(Graph {
        extensions,
        receivers,
        middle,
        exporters,
        parts: Reusable {
            extensions: extension_parts,
            exporters: b.exporters,
            receivers: receiver_parts,
            connectors: b.connectors,
        },
        repoint,
    })
}

impl Builder<'_> {
    /// Whether every extension a component uses was taken over: one rebuilt (its config
    /// changed) must be picked up, so the component is rebuilt too.
    fn uses_kept_extensions(&self, settings: &ComponentSettings) -> bool {
        settings.extensions.iter().all(|r| {
            r.id.parse::<ComponentId>()
                .is_ok_and(|ext| self.kept_extensions.contains(&ext))
        })
    }

    /// For a receiver or connector: per signal, the heads of the pipelines it feeds.
    fn outputs_of(&mut self, id: &ComponentId) -> Result<SignalConsumers, BoxError> {
        let mut next = SignalConsumers::default();
        for signal in Signal::ALL {
            let pipelines: Vec<PipelineId> = self
                .config
                .service
                .pipelines
                .iter()
                .filter(|(pid, p)| pid.signal == signal && p.receivers.contains(id))
                .map(|(pid, _)| pid.clone())
                .collect();
            if !pipelines.is_empty() {
                let heads = pipelines
                    .iter()
                    .map(|pid| self.head(pid))
                    .collect::<Result<Vec<_>, _>>()?;
                next.insert(signal, Fanout::of(heads));
            }
        }
        Ok(next)
    }

    /// The consumer at the head of a pipeline: its first processor, or its exporters.
    fn head(&mut self, pid: &PipelineId) -> Result<SharedConsumer, BoxError> {
        if let Some(head) = self.heads.get(pid) {
            return Ok(head.clone());
        }
        let pipeline = &self.config.service.pipelines[pid];
        let mut outs = Vec::new();
        for id in &pipeline.exporters {
            if self.config.connectors.contains_key(id) {
                outs.push(self.connector(id)? as SharedConsumer);
            } else {
                outs.push(self.exporter(id)? as SharedConsumer);
            }
        }
        let mut next = Fanout::of(outs);
        for id in pipeline.processors.iter().rev() {
            let factory = self
                .registry
                .processor(&id.type_name)
                .ok_or_else(|| unknown(Kind::Processor, id))?;
            let ctx = BuildContext {
                kind: Kind::Processor,
                id,
                telemetry: self.telemetry,
                extensions: self.extensions,
                carried: None,
            };
            let processor = factory
                .build(&ctx, &self.config.processors[id].parsed)
                .map_err(|e| format!("processors.{id}: {e}"))?;
            let name = format!("{id} in {pid}");
            next = if processor.runs_inline() {
                let inline = Arc::new(Inline::new(processor, next));
                self.created.push(Node::new("processor", name, inline.clone()));
                inline
            } else {
                let dropped = self.telemetry.metrics.counter(
                    "hotspan_processor_dropped_items",
                    "Items a processor had acknowledged and then could not hand on.",
                    &[("processor", &id.to_string()), ("pipeline", &pid.to_string())],
                );
                let stage = Arc::new(Stage::new(name.clone(), processor, next, dropped));
                self.created.push(Node::new("processor", name, stage.clone()));
                stage
            };
        }
        self.heads.insert(pid.clone(), next.clone());
        Ok(next)
    }

    fn exporter(&mut self, id: &ComponentId) -> Result<Arc<ExporterRuntime>, BoxError> {
        if let Some(e) = self.exporters.get(id) {
            return Ok(e.runtime.clone());
        }
        let signals: Vec<Signal> = self
            .config
            .service
            .pipelines
            .iter()
            .filter(|(_, p)| p.exporters.contains(id))
            .map(|(pid, _)| pid.signal)
            .collect::<BTreeSet<Signal>>()
            .into_iter()
            .collect();
        let settings = &self.config.exporters[id];
        let unchanged = |old: &&ExporterPart| {
            old.settings == *settings && old.signals == signals && self.uses_kept_extensions(settings)
        };
        if let Some(old) = self.previous.and_then(|p| p.exporters.get(id)).filter(unchanged) {
            self.kept.insert(id.clone());
            self.exporters.insert(id.clone(), old.clone());
            return Ok(old.runtime.clone());
        }
        let factory = self
            .registry
            .exporter(&id.type_name)
            .ok_or_else(|| unknown(Kind::Exporter, id))?;
        let ctx = BuildContext {
            kind: Kind::Exporter,
            id,
            telemetry: self.telemetry,
            extensions: self.extensions,
            carried: None,
        };
        let built = factory
            .build(&ctx, &settings.parsed)
            .map_err(|e| format!("exporters.{id}: {e}"))?;
        let runtime = Arc::new(
            ExporterRuntime::new(id.to_string(), built, &signals, self.telemetry, self.extensions)
                .map_err(|e| format!("exporters.{id}: {e}"))?,
        );
        self.exporters.insert(
            id.clone(),
            ExporterPart {
                settings: settings.clone(),
                signals,
                runtime: runtime.clone(),
            },
        );
        Ok(runtime)
    }

    fn connector(&mut self, id: &ComponentId) -> Result<Arc<dyn ConsumerComponent>, BoxError> {
        if let Some(c) = self.connectors.get(id) {
            return Ok(c.component.clone());
        }
        let next = self.outputs_of(id)?;
        let settings = &self.config.connectors[id];
        let carried = self
            .previous
            .and_then(|p| p.connectors.get(id))
            .filter(|old| old.settings == *settings)
            .and_then(|old| old.component.carry_over());
        let factory = self
            .registry
            .connector(&id.type_name)
            .ok_or_else(|| unknown(Kind::Connector, id))?;
        let ctx = BuildContext {
            kind: Kind::Connector,
            id,
            telemetry: self.telemetry,
            extensions: self.extensions,
            carried,
        };
        let connector = factory
            .build(&ctx, &settings.parsed, next)
            .map_err(|e| format!("connectors.{id}: {e}"))?;
        self.created.push(Node::new(
            "connector",
            id.to_string(),
            connector.clone() as Arc<dyn Lifecycle>,
        ));
        self.connectors.insert(
            id.clone(),
            ConnectorPart {
                settings: settings.clone(),
                component: connector.clone(),
            },
        );
        Ok(connector)
    }
}
