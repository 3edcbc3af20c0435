//! Walks the expanded YAML tree into a [`Config`], collecting every problem with its path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use yaml_serde::{Mapping, Value};

use crate::component::{ComponentSettings, ComponentValue, ExtensionRef, Parsed};
use crate::expand::key_text;
use crate::id::{ComponentId, Kind, PipelineId, Signal};
use crate::lines::join_key;
use crate::model::{Catalog, ComponentInfo, Config, LogsTelemetry, MetricsTelemetry, Pipeline, Telemetry};

const TOP_KEYS: &[&str] = &[
    "receivers",
    "processors",
    "exporters",
    "connectors",
    "extensions",
    "service",
];
const SERVICE_KEYS: &[&str] = &["extensions", "pipelines", "telemetry"];
const PIPELINE_KEYS: &[&str] = &["receivers", "processors", "exporters"];
const TELEMETRY_KEYS: &[&str] = &["logs", "metrics"];
const LOGS_KEYS: &[&str] = &["level", "encoding"];
const METRICS_KEYS: &[&str] = &["address", "level"];

/// Where a connector appears in a pipeline.
struct ConnectorUse {
    pipeline: PipelineId,
    /// Path of the list item, for errors.
    path: String,
}

/// Both sides of one connector's use across all pipelines.
#[derive(Default)]
struct ConnectorUses {
    as_exporter: Vec<ConnectorUse>,
    as_receiver: Vec<ConnectorUse>,
}

/// State for one validation pass.
struct Validator<'a> {
    catalog: &'a dyn Catalog,
    /// (path, message), turned into ConfigErrors with lines by the caller.
    errs: Vec<(String, String)>,
    /// What the catalog said about each defined component; None for an unknown type, so
    /// references to it are not reported a second time.
    infos: HashMap<(Kind, ComponentId), Option<ComponentInfo>>,
    /// The key each component was written under, for paths.
    keys: HashMap<(Kind, ComponentId), String>,
    /// The extensions each component's config names, checked once pipelines say what runs.
    extension_refs: Vec<(Kind, ComponentId, ExtensionRef)>,
    config: Config,
}

/// Validates `root` (already env-expanded). Returns the config and every problem found.
pub(crate) fn validate(root: Value, catalog: &dyn Catalog) -> (Config, Vec<(String, String)>) {
    let mut v = Validator {
        catalog,
        errs: Vec::new(),
        infos: HashMap::new(),
        keys: HashMap::new(),
        extension_refs: Vec::new(),
        config: Config::default(),
    };
    v.root(root);
    (v.config, v.errs)
}

impl Validator<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errs.push((path.into(), message.into()));
    }

    fn root(&mut self, root: Value) {
        let Some(top) = self.mapping("", root, "the config") else {
            return;
        };
        let mut sections: HashMap<String, Value> = HashMap::new();
        for (key, value) in top {
            let key = key_text(&key);
            if TOP_KEYS.contains(&key.as_str()) {
                sections.insert(key, value);
            } else {
                self.unknown_key(&key, &key, TOP_KEYS);
            }
        }
        // Components first: the service section refers to them.
        for kind in Kind::ALL {
            if let Some(section) = sections.remove(kind.section()) {
                self.components(kind, section);
            }
        }
        self.ambiguous_connectors();
        self.service(sections.remove("service"));
        self.extension_refs();
    }

    /// Reads a mapping; null is empty; anything else is reported and gives None.
    fn mapping(&mut self, path: &str, value: Value, what: &str) -> Option<Mapping> {
        match value {
            Value::Mapping(m) => Some(m),
            Value::Null => Some(Mapping::new()),
            other => {
                self.err(
                    path,
                    format!("{what} must be a mapping, found {}", describe(&other)),
                );
                None
            }
        }
    }

    fn unknown_key(&mut self, path: &str, key: &str, expected: &[&str]) {
        self.err(
            path,
            format!("unknown key {key:?}; expected one of {}", expected.join(", ")),
        );
    }

    fn components(&mut self, kind: Kind, section: Value) {
        let what = format!("the {} section", kind.section());
        let Some(entries) = self.mapping(kind.section(), section, &what) else {
            return;
        };
        for (key, value) in entries {
            let key = key_text(&key);
            let path = join_key(kind.section(), &key);
            let id = match key.parse::<ComponentId>() {
                Ok(id) => id,
                Err(e) => {
                    self.err(path, e.to_string());
                    continue;
                }
            };
            if self.config.section(kind).contains_key(&id) {
                self.err(path, format!("{kind} \"{id}\" is defined more than once"));
                continue;
            }
            // `batch:` alone (or `batch: {}`) means "all defaults".
            let value = ComponentValue::normalized(value);
            let info = self.catalog.component(kind, &id.type_name);
            let mut parsed = Parsed::default();
            let mut extensions = Vec::new();
            let mut cannot_take = Vec::new();
            if info.is_some() {
                match self.catalog.check(kind, &id.type_name, &value) {
                    Ok(checked) => {
                        parsed = checked.parsed;
                        extensions = checked.extensions;
                        cannot_take = checked.cannot_take;
                        self.extension_refs
                            .extend(extensions.iter().map(|r| (kind, id.clone(), r.clone())));
                    }
                    Err(errs) => {
                        for fe in errs {
                            let at = if fe.path.is_empty() {
                                path.clone()
                            } else if fe.path.starts_with('[') {
                                format!("{path}{}", fe.path)
                            } else {
                                join_key(&path, &fe.path)
                            };
                            self.err(at, fe.message);
                        }
                    }
                }
            } else {
                self.err(&path, format!("unknown {kind} type {:?}", id.type_name));
            }
            self.infos.insert((kind, id.clone()), info);
            self.keys.insert((kind, id.clone()), key);
            self.config.section_mut(kind).insert(
                id,
                ComponentSettings {
                    value,
                    parsed,
                    extensions,
                    cannot_take,
                },
            );
        }
    }

    /// Each extension a running component names must be defined, of the type it needs and
    /// started under `service.extensions`: building would fail otherwise, so `validate` says
    /// so first.
    fn extension_refs(&mut self) {
        let in_use: HashSet<&ComponentId> = self
            .config
            .service
            .pipelines
            .values()
            .flat_map(|p| p.receivers.iter().chain(&p.processors).chain(&p.exporters))
            .collect();
        let mut found = Vec::new();
        for (kind, id, r) in &self.extension_refs {
            if !in_use.contains(id) {
                continue;
            }
            let key = self.keys.get(&(*kind, id.clone())).cloned().unwrap_or_default();
            let path = join_key(&join_key(kind.section(), &key), &r.path);
            // An id that does not parse is the component's own validate's to report.
            let message = match r.id.parse::<ComponentId>() {
                Err(_) => continue,
                Ok(ext) => match self.config.extensions.get(&ext) {
                    None => format!(
                        "extension \"{ext}\" is not defined (a {} extension is needed)",
                        r.type_name
                    ),
                    Some(_) if ext.type_name != r.type_name => format!(
                        "extension \"{ext}\" is a {}, not a {}",
                        ext.type_name, r.type_name
                    ),
                    Some(_) if !self.config.service.extensions.contains(&ext) => format!(
                        "extension \"{ext}\" is defined but not started: list it in service.extensions"
                    ),
                    Some(_) => continue,
                },
            };
            found.push((path, message));
        }
        self.errs.extend(found);
    }

    /// A connector id that is also a receiver or exporter id would make pipeline lists
    /// ambiguous; otelcol refuses it too.
    fn ambiguous_connectors(&mut self) {
        let mut found = Vec::new();
        for id in self.config.connectors.keys() {
            for other in [Kind::Receiver, Kind::Exporter] {
                if self.config.section(other).contains_key(id) {
                    let key = self
                        .keys
                        .get(&(Kind::Connector, id.clone()))
                        .cloned()
                        .unwrap_or_default();
                    let article = if other == Kind::Exporter { "an" } else { "a" };
                    found.push((
                        join_key("connectors", &key),
                        format!(
                            "\"{id}\" is defined as both a connector and {article} {other}; rename one of them",
                        ),
                    ));
                }
            }
        }
        self.errs.extend(found);
    }

    fn service(&mut self, service: Option<Value>) {
        let pipelines_path = "service.pipelines";
        let Some(service) = self.mapping("service", service.unwrap_or(Value::Null), "service") else {
            return;
        };
        let mut pipelines = None;
        for (key, value) in service {
            let key = key_text(&key);
            let path = join_key("service", &key);
            match key.as_str() {
                "extensions" => self.service_extensions(&path, value),
                "pipelines" => pipelines = Some(value),
                "telemetry" => self.telemetry(&path, value),
                _ => self.unknown_key(&path, &key, SERVICE_KEYS),
            }
        }
        let pipelines = pipelines.unwrap_or(Value::Null);
        let Some(pipelines) = self.mapping(pipelines_path, pipelines, "service.pipelines") else {
            return;
        };
        if pipelines.is_empty() {
            self.err(pipelines_path, "at least one pipeline is required");
            return;
        }
        let mut uses: BTreeMap<ComponentId, ConnectorUses> = BTreeMap::new();
        let mut pipeline_keys: HashMap<PipelineId, String> = HashMap::new();
        for (key, value) in pipelines {
            let key = key_text(&key);
            let path = join_key(pipelines_path, &key);
            let id = match key.parse::<PipelineId>() {
                Ok(id) => id,
                Err(e) => {
                    self.err(path, e.to_string());
                    continue;
                }
            };
            if pipeline_keys.contains_key(&id) {
                self.err(path, format!("pipeline \"{id}\" is defined more than once"));
                continue;
            }
            let pipeline = self.pipeline(&path, &id, value, &mut uses);
            pipeline_keys.insert(id.clone(), key);
            self.config.service.pipelines.insert(id, pipeline);
        }
        self.connector_uses(&uses);
        self.connector_cycles(&uses, &pipeline_keys);
    }

    fn service_extensions(&mut self, path: &str, value: Value) {
        let mut seen = HashSet::new();
        for (item, parsed) in self.id_list(path, value) {
            let id = match parsed {
                Ok(id) => id,
                Err(msg) => {
                    self.err(item, msg);
                    continue;
                }
            };
            if !seen.insert(id.clone()) {
                self.err(item, format!("extension \"{id}\" is listed more than once"));
            } else if !self.config.extensions.contains_key(&id) {
                self.err(item, format!("extension \"{id}\" is not defined"));
            } else {
                self.config.service.extensions.push(id);
            }
        }
    }

    /// Reads a list of component ids: each item's path with its id or what is wrong with it,
    /// in list order so callers report problems in the order they are written.
    fn id_list(&mut self, path: &str, value: Value) -> Vec<(String, Result<ComponentId, String>)> {
        let items = match value {
            Value::Null => return Vec::new(),
            Value::Sequence(items) => items,
            other => {
                self.err(
                    path,
                    format!("expected a list of component ids, found {}", describe(&other)),
                );
                return Vec::new();
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let parsed = match scalar_text(item) {
                    Some(text) => text.parse::<ComponentId>().map_err(|e| e.to_string()),
                    None => Err(format!("expected a component id, found {}", describe(item))),
                };
                (format!("{path}[{i}]"), parsed)
            })
            .collect()
    }

    fn pipeline(
        &mut self,
        path: &str,
        id: &PipelineId,
        value: Value,
        uses: &mut BTreeMap<ComponentId, ConnectorUses>,
    ) -> Pipeline {
        let mut pipeline = Pipeline::default();
        let Some(body) = self.mapping(path, value, "a pipeline") else {
            return pipeline;
        };
        let mut lists: HashMap<String, Value> = HashMap::new();
        for (key, value) in body {
            let key = key_text(&key);
            if PIPELINE_KEYS.contains(&key.as_str()) {
                lists.insert(key, value);
            } else {
                self.unknown_key(&join_key(path, &key), &key, PIPELINE_KEYS);
            }
        }
        let signal = id.signal;
        for (list_key, kind) in [
            ("receivers", Kind::Receiver),
            ("processors", Kind::Processor),
            ("exporters", Kind::Exporter),
        ] {
            let list_path = join_key(path, list_key);
            let value = lists.remove(list_key).unwrap_or(Value::Null);
            // A list of the wrong shape is reported as such, not also as missing.
            let missing = match &value {
                Value::Null => true,
                Value::Sequence(items) => items.is_empty(),
                _ => false,
            };
            let refs = self.id_list(&list_path, value);
            if missing && kind != Kind::Processor {
                self.err(&list_path, format!("a pipeline needs at least one {kind}"));
            }
            let mut seen = HashSet::new();
            for (item, parsed) in refs {
                let cid = match parsed {
                    Ok(cid) => cid,
                    Err(msg) => {
                        self.err(item, msg);
                        continue;
                    }
                };
                if !seen.insert(cid.clone()) {
                    self.err(item, format!("{kind} \"{cid}\" is listed more than once"));
                    continue;
                }
                if self.config.section(kind).contains_key(&cid) {
                    self.check_signal(&item, kind, &cid, signal);
                } else if kind != Kind::Processor && self.config.connectors.contains_key(&cid) {
                    let u = uses.entry(cid.clone()).or_default();
                    let side = if kind == Kind::Receiver {
                        &mut u.as_receiver
                    } else {
                        &mut u.as_exporter
                    };
                    side.push(ConnectorUse {
                        pipeline: id.clone(),
                        path: item,
                    });
                } else {
                    self.err(item, format!("{kind} \"{cid}\" is not defined"));
                }
                match kind {
                    Kind::Receiver => pipeline.receivers.push(cid),
                    Kind::Processor => pipeline.processors.push(cid),
                    _ => pipeline.exporters.push(cid),
                }
            }
        }
        pipeline
    }

    fn check_signal(&mut self, item: &str, kind: Kind, id: &ComponentId, signal: Signal) {
        // An unknown type was reported where it is defined.
        let Some(Some(info)) = self.infos.get(&(kind, id.clone())) else {
            return;
        };
        let supported = match info {
            ComponentInfo::Signals(signals) => signals.contains(&signal),
            ComponentInfo::Connector(_) | ComponentInfo::Extension => false,
        };
        if !supported {
            self.err(item, format!("{kind} \"{id}\" does not support {signal}"));
            return;
        }
        let settings = self.config.section(kind).get(id);
        let why = settings.and_then(|c| c.cannot_take.iter().find(|(s, _)| *s == signal));
        if let Some((_, why)) = why {
            self.err(item, format!("{kind} \"{id}\" cannot take {signal}: {why}"));
        }
    }

    /// Each connector must be on both sides, and each (exporter signal, receiver signal) pair
    /// it joins must be one it supports.
    fn connector_uses(&mut self, uses: &BTreeMap<ComponentId, ConnectorUses>) {
        for (id, u) in uses {
            match (u.as_exporter.first(), u.as_receiver.first()) {
                (Some(first), None) => {
                    self.err(
                        &first.path,
                        format!(
                            "connector \"{id}\" is used as an exporter but not as a receiver in any pipeline"
                        ),
                    );
                    continue;
                }
                (None, Some(first)) => {
                    self.err(
                        &first.path,
                        format!(
                            "connector \"{id}\" is used as a receiver but not as an exporter in any pipeline"
                        ),
                    );
                    continue;
                }
                _ => {}
            }
            let pairs = match self.infos.get(&(Kind::Connector, id.clone())) {
                Some(Some(ComponentInfo::Connector(pairs))) => pairs.clone(),
                // Unknown type: already reported.
                Some(None) | None => continue,
                Some(Some(_)) => Vec::new(),
            };
            // One message per exporter-side signal, naming its first pipeline.
            let mut by_signal: BTreeMap<Signal, &PipelineId> = BTreeMap::new();
            for e in &u.as_exporter {
                by_signal.entry(e.pipeline.signal).or_insert(&e.pipeline);
            }
            for r in &u.as_receiver {
                for (from, from_pipeline) in &by_signal {
                    let to = r.pipeline.signal;
                    if !pairs.contains(&(*from, to)) {
                        self.err(
                            &r.path,
                            format!(
                                "connector \"{id}\" cannot connect {from} to {to} (it is an exporter in pipeline \"{from_pipeline}\")"
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Pipelines joined by connectors must not loop back on themselves.
    fn connector_cycles(
        &mut self,
        uses: &BTreeMap<ComponentId, ConnectorUses>,
        pipeline_keys: &HashMap<PipelineId, String>,
    ) {
        // from pipeline -> to pipeline -> the (smallest) connector joining them.
        let mut edges: BTreeMap<&PipelineId, BTreeMap<&PipelineId, &ComponentId>> = BTreeMap::new();
        for (id, u) in uses {
            for e in &u.as_exporter {
                for r in &u.as_receiver {
                    edges
                        .entry(&e.pipeline)
                        .or_default()
                        .entry(&r.pipeline)
                        .or_insert(id);
                }
            }
        }
        let reach = |from: &PipelineId| -> BTreeSet<&PipelineId> {
            let mut seen = BTreeSet::new();
            let mut queue: VecDeque<&PipelineId> = VecDeque::new();
            queue.push_back(from);
            while let Some(p) = queue.pop_front() {
                for next in edges.get(p).into_iter().flat_map(|m| m.keys()) {
                    if seen.insert(*next) {
                        queue.push_back(next);
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&PipelineId, BTreeSet<&PipelineId>> =
            edges.keys().map(|p| (*p, reach(p))).collect();
        // Report one cycle per strongly connected group, starting at its smallest pipeline.
        let mut reported: BTreeSet<&PipelineId> = BTreeSet::new();
        for (start, reachable) in &reaches {
            if !reachable.contains(start) || reported.contains(start) {
                continue;
            }
            let group: BTreeSet<&PipelineId> = reachable
                .iter()
                .filter(|p| reaches.get(*p).is_some_and(|r| r.contains(start)))
                .copied()
                .collect();
            reported.extend(group.iter().copied());
            let cycle = shortest_cycle(start, &edges, &group);
            let mut text = start.to_string();
            for (connector, pipeline) in &cycle {
                text.push_str(&format!(" -> {connector} -> {pipeline}"));
            }
            let key = pipeline_keys
                .get(*start)
                .cloned()
                .unwrap_or_else(|| start.to_string());
            self.err(
                join_key("service.pipelines", &key),
                format!("connector cycle: {text}"),
            );
        }
    }

    fn telemetry(&mut self, path: &str, value: Value) {
        let Some(body) = self.mapping(path, value, "service.telemetry") else {
            return;
        };
        let mut telemetry = Telemetry::default();
        for (key, value) in body {
            let key = key_text(&key);
            let sub = join_key(path, &key);
            match key.as_str() {
                "logs" => telemetry.logs = self.logs(&sub, value),
                "metrics" => telemetry.metrics = self.metrics(&sub, value),
                _ => self.unknown_key(&sub, &key, TELEMETRY_KEYS),
            }
        }
        self.config.service.telemetry = telemetry;
    }

    fn logs(&mut self, path: &str, value: Value) -> LogsTelemetry {
        let mut logs = LogsTelemetry::default();
        let Some(body) = self.mapping(path, value, "service.telemetry.logs") else {
            return logs;
        };
        for (key, value) in body {
            let key = key_text(&key);
            let sub = join_key(path, &key);
            match key.as_str() {
                "level" => {
                    if let Some(v) = self.named(&sub, &value) {
                        logs.level = v;
                    }
                }
                "encoding" => {
                    if let Some(v) = self.named(&sub, &value) {
                        logs.encoding = v;
                    }
                }
                _ => self.unknown_key(&sub, &key, LOGS_KEYS),
            }
        }
        logs
    }

    fn metrics(&mut self, path: &str, value: Value) -> MetricsTelemetry {
        let mut metrics = MetricsTelemetry::default();
        let Some(body) = self.mapping(path, value, "service.telemetry.metrics") else {
            return metrics;
        };
        for (key, value) in body {
            let key = key_text(&key);
            let sub = join_key(path, &key);
            match key.as_str() {
                "address" => match value {
                    Value::Null => metrics.address = None,
                    // Only the port is checked: the host may be a name, or empty as Go allows.
                    Value::String(s) if !has_port(&s) => self.err(
                        sub,
                        format!(
                            "expected an address like \"0.0.0.0:8888\" (host:port, the port from 0 to 65535), found \"{s}\""
                        ),
                    ),
                    Value::String(s) => metrics.address = Some(s),
                    other => self.err(
                        sub,
                        format!(
                            "expected an address like \"0.0.0.0:8888\", found {}",
                            describe(&other)
                        ),
                    ),
                },
                "level" => {
                    if let Some(v) = self.named(&sub, &value) {
                        metrics.level = v;
                    }
                }
                _ => self.unknown_key(&sub, &key, METRICS_KEYS),
            }
        }
        metrics
    }

    /// Reads one of the telemetry enums; null keeps the default.
    fn named<T: std::str::FromStr<Err = String>>(&mut self, path: &str, value: &Value) -> Option<T> {
        if value.is_null() {
            return None;
        }
        let Some(text) = scalar_text(value) else {
            self.err(path, format!("expected a string, found {}", describe(value)));
            return None;
        };
        match text.parse::<T>() {
            Ok(v) => Some(v),
            Err(msg) => {
                self.err(path, msg);
                None
            }
        }
    }
}

/// The shortest way from `start` back to itself inside `group`, as (connector, pipeline) hops.
fn shortest_cycle<'a>(
    start: &'a PipelineId,
    edges: &BTreeMap<&'a PipelineId, BTreeMap<&'a PipelineId, &'a ComponentId>>,
    group: &BTreeSet<&'a PipelineId>,
) -> Vec<(&'a ComponentId, &'a PipelineId)> {
    // Breadth-first from start; `came_from[p]` is the hop that first reached p.
    let mut came_from: BTreeMap<&PipelineId, (&PipelineId, &ComponentId)> = BTreeMap::new();
    let mut queue: VecDeque<&PipelineId> = VecDeque::from([start]);
    'search: while let Some(p) = queue.pop_front() {
        for (next, connector) in edges.get(p).into_iter().flatten() {
            if !group.contains(next) || came_from.contains_key(next) {
                continue;
            }
            came_from.insert(next, (p, connector));
            if *next == start {
                break 'search;
            }
            queue.push_back(next);
        }
    }
    let mut hops = Vec::new();
    let mut at = start;
    while let Some((prev, connector)) = came_from.get(at) {
        hops.push((*connector, at));
        at = prev;
        if at == start {
            break;
        }
    }
    hops.reverse();
    hops
}

/// Whether `address` ends in `:port` with a port that fits 16 bits.
fn has_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}

/// A scalar written as text; ids and enum names are compared as strings.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What kind of value was found, for "expected X, found Y".
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
