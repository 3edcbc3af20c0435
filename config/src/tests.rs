//! End-to-end tests of `load` against a small fake catalog.

use std::time::Duration;

use crate::*;
use serde::Deserialize;

/// Stands in for the collector's registry: a few types with real config structs.
struct FakeCatalog;

#[derive(Deserialize, Default, Debug)]
#[serde(default, deny_unknown_fields)]
struct OtlpReceiver {
    protocols: Protocols,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, deny_unknown_fields)]
struct Protocols {
    #[serde(deserialize_with = "present::or_default")]
    grpc: Option<Endpoint>,
    #[serde(deserialize_with = "present::or_default")]
    http: Option<Endpoint>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, deny_unknown_fields)]
struct Endpoint {
    endpoint: Option<String>,
    max_recv_msg_size_mib: Option<u32>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, deny_unknown_fields)]
struct Batch {
    #[serde(deserialize_with = "duration::deserialize")]
    timeout: Duration,
    send_batch_size: u32,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, deny_unknown_fields)]
struct Debug {
    verbosity: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, deny_unknown_fields)]
struct Empty {}

impl ComponentConfig for OtlpReceiver {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        for (name, p) in [("grpc", &self.protocols.grpc), ("http", &self.protocols.http)] {
            if let Some(Endpoint {
                endpoint: Some(ep), ..
            }) = p
            {
                if !ep.contains(':') {
                    errs.push(FieldError::new(
                        format!("protocols.{name}.endpoint"),
                        "must be host:port",
                    ));
                }
            }
        }
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            errs.push(FieldError::new("", "at least one protocol must be enabled"));
        }
    }
}

impl ComponentConfig for Batch {}
impl ComponentConfig for Debug {}
impl ComponentConfig for Empty {}

/// An exporter whose queue may live in a `file_storage` extension.
#[derive(Deserialize, Default, Debug)]
#[serde(default, deny_unknown_fields)]
struct Queued {
    storage: Option<String>,
}

impl ComponentConfig for Queued {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        if let Some(Err(e)) = self.storage.as_deref().map(str::parse::<ComponentId>) {
            errs.push(FieldError::new("storage", e.to_string()));
        }
    }
    fn extensions(&self) -> Vec<ExtensionRef> {
        self.storage
            .iter()
            .map(|id| ExtensionRef {
                path: "storage".into(),
                id: id.clone(),
                type_name: "file_storage",
            })
            .collect()
    }
}

impl Catalog for FakeCatalog {
    fn component(&self, kind: Kind, type_name: &str) -> Option<ComponentInfo> {
        use Signal::*;
        Some(match (kind, type_name) {
            (Kind::Receiver, "otlp") => ComponentInfo::Signals(vec![Traces, Profiles]),
            (Kind::Receiver, "hostmetrics") => ComponentInfo::Signals(vec![Metrics]),
            // Types shared with a connector, to test ambiguous ids.
            (Kind::Receiver | Kind::Exporter, "forward") => ComponentInfo::Signals(vec![Traces]),
            (Kind::Processor, "batch") => ComponentInfo::Signals(Signal::ALL.to_vec()),
            (Kind::Processor, "sampler") => ComponentInfo::Signals(vec![Traces]),
            (Kind::Exporter, "debug" | "queued") => ComponentInfo::Signals(Signal::ALL.to_vec()),
            (Kind::Connector, "forward") => {
                ComponentInfo::Connector(vec![(Traces, Traces), (Profiles, Profiles)])
            }
            (Kind::Connector, "spanprofile") => {
                ComponentInfo::Connector(vec![(Traces, Traces), (Profiles, Traces)])
            }
            (Kind::Extension, "health_check" | "file_storage") => ComponentInfo::Extension,
            _ => return None,
        })
    }

    fn check(
        &self,
        kind: Kind,
        type_name: &str,
        config: &ComponentValue,
    ) -> Result<Checked, Vec<FieldError>> {
        match (kind, type_name) {
            (Kind::Receiver, "otlp") => check_component::<OtlpReceiver>(config),
            (Kind::Processor, "batch") => check_component::<Batch>(config),
            (Kind::Exporter, "debug") => check_component::<Debug>(config),
            (Kind::Exporter, "queued") => check_component::<Queued>(config),
            _ => check_component::<Empty>(config),
        }
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn test_env(name: &str) -> Option<String> {
    match name {
        "GRPC_PORT" => Some("4317".into()),
        "BATCH" => Some("512".into()),
        "HOST" => Some("collector.local".into()),
        "LEVEL" => Some("DEBUG".into()),
        _ => None,
    }
}

fn load_ok(text: &str) -> Config {
    match load(text, &test_env, &FakeCatalog) {
        Ok(config) => config,
        Err(errs) => panic!("expected success, got:\n{}", render(&errs)),
    }
}

fn load_err(text: &str) -> Vec<ConfigError> {
    match load(text, &test_env, &FakeCatalog) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errs) => errs,
    }
}

/// All errors, one per line, as a user sees them.
fn render(errs: &[ConfigError]) -> String {
    errs.iter().map(|e| format!("{e}\n")).collect()
}

fn id(s: &str) -> ComponentId {
    s.parse().unwrap()
}

fn pid(s: &str) -> PipelineId {
    s.parse().unwrap()
}

/// A component's settings as a test expects them (compared by what was written).
fn yaml(s: &str) -> ComponentSettings {
    ComponentSettings {
        value: ComponentValue::from_yaml(s).unwrap(),
        parsed: Parsed::default(),
        extensions: Vec::new(),
        cannot_take: Vec::new(),
    }
}

/// A valid head for configs whose tail (service section) a test varies.
const COMPONENTS: &str = "\
receivers:
  otlp:
    protocols:
      grpc:
  hostmetrics:
processors:
  batch:
  sampler:
exporters:
  debug:
  debug/2:
connectors:
  forward:
  forward/2:
  spanprofile:
extensions:
  health_check:
";

const GOOD: &str = "\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:HOST}:${env:GRPC_PORT}
      http:
  otlp/unused:
    protocols:
      http:
        max_recv_msg_size_mib: ${env:GRPC_PORT}
processors:
  batch:
    timeout: 200ms
    send_batch_size: ${env:BATCH}
  batch/empty: {}
exporters:
  debug:
    verbosity: detailed
connectors:
  spanprofile:
extensions:
  health_check:
service:
  extensions: [health_check]
  telemetry:
    logs:
      level: ${env:LEVEL}
      encoding: json
    metrics:
      address: 0.0.0.0:8888
      level: Detailed
  pipelines:
    traces/in:
      receivers: [otlp]
      processors: [batch]
      exporters: [spanprofile]
    profiles/in:
      receivers: [otlp]
      exporters: [spanprofile]
    traces/out:
      receivers: [spanprofile]
      processors: [batch/empty, batch]
      exporters: [debug]
";

#[test]
fn good_config_loads() {
    let config = load_ok(GOOD);

    let receivers: Vec<_> = config.receivers.keys().map(ToString::to_string).collect();
    assert_eq!(receivers, ["otlp", "otlp/unused"]);
    assert_eq!(
        config.receivers[&id("otlp")],
        yaml("protocols: {grpc: {endpoint: \"collector.local:4317\"}, http: null}")
    );
    // A whole-value reference becomes a number, so u32 fields accept it.
    assert_eq!(
        config.processors[&id("batch")],
        yaml("{timeout: 200ms, send_batch_size: 512}")
    );
    assert_eq!(config.processors[&id("batch/empty")], yaml("{}"));
    // `spanprofile:` with nothing after it is normalized to an empty mapping.
    assert_eq!(config.connectors[&id("spanprofile")], yaml("{}"));
    assert_eq!(config.section(Kind::Extension).len(), 1);

    let service = &config.service;
    assert_eq!(service.extensions, vec![id("health_check")]);
    let pipelines: Vec<_> = service.pipelines.keys().map(ToString::to_string).collect();
    assert_eq!(pipelines, ["traces/in", "traces/out", "profiles/in"]);
    assert_eq!(
        service.pipelines[&pid("traces/out")],
        Pipeline {
            receivers: vec![id("spanprofile")],
            processors: vec![id("batch/empty"), id("batch")],
            exporters: vec![id("debug")],
        }
    );
    assert_eq!(service.pipelines[&pid("profiles/in")].processors, vec![]);

    assert_eq!(
        service.telemetry,
        Telemetry {
            logs: LogsTelemetry {
                level: LogLevel::Debug,
                encoding: LogEncoding::Json,
            },
            metrics: MetricsTelemetry {
                address: Some("0.0.0.0:8888".into()),
                level: MetricsLevel::Detailed,
            },
        }
    );
}

#[test]
fn telemetry_defaults() {
    let config = load_ok(&format!(
        "{COMPONENTS}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
    ));
    assert_eq!(config.service.telemetry, Telemetry::default());
    assert_eq!(config.service.telemetry.logs.level, LogLevel::Info);
    assert_eq!(config.service.telemetry.logs.encoding, LogEncoding::Console);
    assert_eq!(config.service.telemetry.metrics.level, MetricsLevel::Normal);
    assert_eq!(config.service.telemetry.metrics.address, None);
    assert!(config.service.extensions.is_empty());
}

#[test]
fn syntax_error_has_line() {
    let errs = load_err("receivers:\n  otlp:\n    protocols: [grpc\nexporters:\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "");
    assert!(errs[0].line.is_some());
    assert!(errs[0].message.starts_with("invalid YAML: "), "{}", errs[0]);

    let errs = load_err("service:\n  pipelines:\n    traces:\n   bad: indent\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, Some(4), "{}", errs[0]);
    assert!(!errs[0].message.contains("at line 4"), "{}", errs[0]);

    let errs = load_err("receivers:\n  otlp:\n  otlp:\nservice:\n  pipelines:\n    traces: {receivers: [a, b], receivers: [c]}\n");
    assert_eq!(
        render(&errs),
        "\
line 3: receivers.otlp: key is repeated; each key may appear only once
line 6: service.pipelines.traces.receivers: key is repeated; each key may appear only once
"
    );
}

#[test]
fn unknown_keys() {
    let text = format!(
        "{COMPONENTS}\
foo: 1
service:
  extension: []
  telemetry:
    traces: {{}}
    logs:
      level: info
      sampling: {{}}
    metrics:
      readers: []
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
      connectors: [forward]
"
    );
    let errs = load_err(&text);
    assert_eq!(
        render(&errs),
        "\
line 18: foo: unknown key \"foo\"; expected one of receivers, processors, exporters, connectors, extensions, service
line 20: service.extension: unknown key \"extension\"; expected one of extensions, pipelines, telemetry
line 22: service.telemetry.traces: unknown key \"traces\"; expected one of logs, metrics
line 25: service.telemetry.logs.sampling: unknown key \"sampling\"; expected one of level, encoding
line 27: service.telemetry.metrics.readers: unknown key \"readers\"; expected one of address, level
line 32: service.pipelines.traces.connectors: unknown key \"connectors\"; expected one of receivers, processors, exporters
"
    );
}

#[test]
fn sections_may_be_absent_or_null() {
    let config = load_ok(
        "receivers:\n  otlp:\n    protocols: {grpc: }\nprocessors:\nconnectors: ~\nexporters: {debug: }\n\
service:\n  extensions:\n  telemetry:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      \
processors:\n      exporters: [debug]\n",
    );
    assert!(config.processors.is_empty());
    assert!(config.connectors.is_empty());
    assert!(config.extensions.is_empty());
    assert_eq!(config.service.pipelines.len(), 1);
}

#[test]
fn wrong_shapes() {
    let errs = load_err("- a\n- b\n");
    assert_eq!(render(&errs), "the config must be a mapping, found a list\n");

    let errs = load_err(
        "receivers: [otlp]\nservice:\n  pipelines:\n    traces: [otlp]\n    logs:\n      receivers: otlp\n      exporters: [{debug: 1}]\n",
    );
    assert_eq!(
        render(&errs),
        "\
line 1: receivers: the receivers section must be a mapping, found a list
line 4: service.pipelines.traces: a pipeline must be a mapping, found a list
line 6: service.pipelines.logs.receivers: expected a list of component ids, found a string
line 7: service.pipelines.logs.exporters[0]: expected a component id, found a mapping
"
    );
}

#[test]
fn bad_component_ids() {
    let errs = load_err(&format!(
        "receivers:\n  otlp/:\n  1otlp:\n{}service:\n  pipelines:\n    traces:\n      receivers: [otlp/]\n      exporters: [debug]\n",
        &COMPONENTS["receivers:\n".len()..]
    ));
    assert_eq!(
        render(&errs),
        "\
line 2: receivers.otlp/: invalid component id \"otlp/\": the name after '/' is empty
line 3: receivers.1otlp: invalid component id \"1otlp\": the type \"1otlp\" must start with a letter
line 23: service.pipelines.traces.receivers[0]: invalid component id \"otlp/\": the name after '/' is empty
"
    );
}

#[test]
fn unknown_types() {
    let errs = load_err(
        "receivers:\n  foo:\n  otlp/x:\n    protocols: {grpc: }\nprocessors:\n  debug:\nexporters:\n  debug:\nextensions:\n  zpages:\n\
service:\n  pipelines:\n    metrics:\n      receivers: [foo]\n      exporters: [debug]\n",
    );
    assert_eq!(
        render(&errs),
        "\
line 2: receivers.foo: unknown receiver type \"foo\"
line 6: processors.debug: unknown processor type \"debug\"
line 10: extensions.zpages: unknown extension type \"zpages\"
"
    );
}

#[test]
fn component_config_errors_get_full_paths_and_lines() {
    let errs = load_err(
        "\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: nocolon
  otlp/2:
    protocols:
      grpc:
        bogus: 1
  otlp/3:
processors:
  batch:
    timeout: 5
exporters:
  debug:
    verbosity: [1]
connectors:
  forward:
    extra: true
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
",
    );
    assert_eq!(
        render(&errs),
        "\
line 5: receivers.otlp.protocols.grpc.endpoint: must be host:port
line 9: receivers.otlp/2.protocols.grpc.bogus: unknown field `bogus`, expected `endpoint` or `max_recv_msg_size_mib`
line 10: receivers.otlp/3: at least one protocol must be enabled
line 13: processors.batch.timeout: invalid duration 5: missing unit (write e.g. \"5s\" or \"5ms\")
line 16: exporters.debug.verbosity: invalid type: sequence, expected a string
line 19: connectors.forward.extra: unknown field `extra`, there are no fields
"
    );
}

#[test]
fn pipelines_are_required() {
    for service in [
        "",
        "service:\n",
        "service:\n  pipelines:\n",
        "service:\n  pipelines: {}\n",
    ] {
        let errs = load_err(&format!("{COMPONENTS}{service}"));
        assert_eq!(errs.len(), 1, "{service:?}: {}", render(&errs));
        assert_eq!(errs[0].path, "service.pipelines");
        assert_eq!(errs[0].message, "at least one pipeline is required");
    }
    let errs = load_err("");
    assert_eq!(
        render(&errs),
        "service.pipelines: at least one pipeline is required\n"
    );
    let errs = load_err("service:\n  pipelines:\n");
    assert_eq!(
        render(&errs),
        "line 2: service.pipelines: at least one pipeline is required\n"
    );
}

#[test]
fn pipeline_rules() {
    let text = format!(
        "{COMPONENTS}\
service:
  pipelines:
    traces:
      receivers: [otlp, hostmetrics, debug]
      processors: [batch, otlp, batch]
      exporters: [debug, otlp/x, debug]
    metrics:
      receivers: [otlp]
      processors: [sampler]
      exporters: [debug]
    logs:
      processors: [batch]
    logs/2:
      receivers: []
      exporters:
    spans/x:
      receivers: [otlp]
      exporters: [debug]
"
    );
    let errs = load_err(&text);
    assert_eq!(
        render(&errs),
        "\
line 21: service.pipelines.traces.receivers[1]: receiver \"hostmetrics\" does not support traces
line 21: service.pipelines.traces.receivers[2]: receiver \"debug\" is not defined
line 22: service.pipelines.traces.processors[1]: processor \"otlp\" is not defined
line 22: service.pipelines.traces.processors[2]: processor \"batch\" is listed more than once
line 23: service.pipelines.traces.exporters[1]: exporter \"otlp/x\" is not defined
line 23: service.pipelines.traces.exporters[2]: exporter \"debug\" is listed more than once
line 25: service.pipelines.metrics.receivers[0]: receiver \"otlp\" does not support metrics
line 26: service.pipelines.metrics.processors[0]: processor \"sampler\" does not support metrics
line 28: service.pipelines.logs.receivers: a pipeline needs at least one receiver
line 28: service.pipelines.logs.exporters: a pipeline needs at least one exporter
line 31: service.pipelines.logs/2.receivers: a pipeline needs at least one receiver
line 32: service.pipelines.logs/2.exporters: a pipeline needs at least one exporter
line 33: service.pipelines.spans/x: invalid pipeline id \"spans/x\": unknown signal \"spans\"; expected one of traces, metrics, logs, profiles
"
    );
    // Paths are exact even when the line comes from an ancestor.
    assert_eq!(errs[8].path, "service.pipelines.logs.receivers");
}

#[test]
fn service_extensions() {
    let errs = load_err(&format!(
        "{COMPONENTS}\
service:
  extensions: [health_check, zpages, health_check, \"bad/\"]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"
    ));
    assert_eq!(
        render(&errs),
        "\
line 19: service.extensions[1]: extension \"zpages\" is not defined
line 19: service.extensions[2]: extension \"health_check\" is listed more than once
line 19: service.extensions[3]: invalid component id \"bad/\": the name after '/' is empty
"
    );
}

#[test]
fn connectors_must_be_used_on_both_sides() {
    let errs = load_err(&format!(
        "{COMPONENTS}\
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [forward]
    traces/2:
      receivers: [forward/2]
      exporters: [debug]
"
    ));
    assert_eq!(
        render(&errs),
        "\
line 22: service.pipelines.traces.exporters[0]: connector \"forward\" is used as an exporter but not as a receiver in any pipeline
line 24: service.pipelines.traces/2.receivers[0]: connector \"forward/2\" is used as a receiver but not as an exporter in any pipeline
"
    );
}

#[test]
fn connector_signal_pairs() {
    let text = format!(
        "{COMPONENTS}\
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [forward, spanprofile]
    profiles/in:
      receivers: [otlp]
      exporters: [forward, spanprofile]
    profiles/out:
      receivers: [forward, spanprofile]
      exporters: [debug]
    traces/out:
      receivers: [forward, spanprofile]
      exporters: [debug]
"
    );
    let errs = load_err(&text);
    assert_eq!(
        render(&errs),
        "\
line 27: service.pipelines.profiles/out.receivers[0]: connector \"forward\" cannot connect traces to profiles (it is an exporter in pipeline \"traces/in\")
line 27: service.pipelines.profiles/out.receivers[1]: connector \"spanprofile\" cannot connect traces to profiles (it is an exporter in pipeline \"traces/in\")
line 27: service.pipelines.profiles/out.receivers[1]: connector \"spanprofile\" cannot connect profiles to profiles (it is an exporter in pipeline \"profiles/in\")
line 30: service.pipelines.traces/out.receivers[0]: connector \"forward\" cannot connect profiles to traces (it is an exporter in pipeline \"profiles/in\")
"
    );

    // The join as designed: traces and profiles in, traces out.
    let config = load_ok(&format!(
        "{COMPONENTS}\
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [spanprofile]
    profiles/in:
      receivers: [otlp]
      exporters: [spanprofile]
    traces/out:
      receivers: [spanprofile]
      exporters: [debug]
"
    ));
    assert_eq!(config.service.pipelines.len(), 3);
}

#[test]
fn connector_cycles() {
    let errs = load_err(&format!(
        "{COMPONENTS}\
service:
  pipelines:
    traces/a:
      receivers: [otlp, forward/2]
      exporters: [forward]
    traces/b:
      receivers: [forward]
      exporters: [forward/2, debug]
    traces/c:
      receivers: [spanprofile]
      exporters: [spanprofile]
"
    ));
    assert_eq!(
        render(&errs),
        "\
line 20: service.pipelines.traces/a: connector cycle: traces/a -> forward -> traces/b -> forward/2 -> traces/a
line 26: service.pipelines.traces/c: connector cycle: traces/c -> spanprofile -> traces/c
"
    );
}

#[test]
fn ambiguous_connector_ids() {
    let errs = load_err(
        "receivers:\n  forward:\nexporters:\n  debug:\n  forward/x:\nconnectors:\n  forward:\n  forward/x:\n\
service:\n  pipelines:\n    traces:\n      receivers: [forward]\n      exporters: [debug]\n",
    );
    assert_eq!(
        render(&errs),
        "\
line 7: connectors.forward: \"forward\" is defined as both a connector and a receiver; rename one of them
line 8: connectors.forward/x: \"forward/x\" is defined as both a connector and an exporter; rename one of them
"
    );
}

#[test]
fn unused_components_are_still_checked() {
    let errs = load_err(&format!(
        "{COMPONENTS}  health_check/bad:
    port: 1
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"
    ));
    assert_eq!(
        render(&errs),
        "line 19: extensions.health_check/bad.port: unknown field `port`, there are no fields\n"
    );
}

#[test]
fn env_expansion_in_load() {
    let text = "\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: \"${env:HOST}:${env:PORT:-4317}\"
        max_recv_msg_size_mib: ${env:UNSET:-16}
exporters:
  ${env:HOST}:
  debug:
    verbosity: $${env:HOST}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
";
    let errs = load_err(text);
    // Keys are not expanded, so the key stays an invalid id.
    assert_eq!(errs.len(), 1, "{}", render(&errs));
    assert_eq!(errs[0].path, "exporters.${env:HOST}");
    assert_eq!(errs[0].line, Some(8));

    let config = load_ok(&text.replace("  ${env:HOST}:\n", ""));
    assert_eq!(
        config.receivers[&id("otlp")],
        yaml("protocols: {grpc: {endpoint: \"collector.local:4317\", max_recv_msg_size_mib: 16}}")
    );
    assert_eq!(config.exporters[&id("debug")], yaml("verbosity: \"${env:HOST}\""));
}

#[test]
fn env_errors_have_paths_and_lines() {
    let errs = load_err(&format!(
        "{COMPONENTS}\
service:
  telemetry:
    logs:
      level: ${{env:}}
    metrics:
      address: ${{foo:bar}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [\"${{env:HOST\"]
"
    ));
    // The unexpanded values would also be a bad level and an undefined exporter; those repeats
    // are suppressed.
    assert_eq!(
        render(&errs),
        "\
line 21: service.telemetry.logs.level: missing variable name in \"${env:}\"
line 23: service.telemetry.metrics.address: unknown config provider \"foo\" in \"${foo:bar}\"; env, file and yaml are supported
line 27: service.pipelines.traces.exporters[0]: unclosed \"${\" in \"${env:HOST\" (write \"$$\" for a literal \"$\")
"
    );
}

#[test]
fn env_uses_the_given_lookup() {
    let text = format!(
        "{COMPONENTS}service:\n  telemetry:\n    metrics:\n      address: ${{env:ADDR:-:8888}}\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
    );
    let config = load(&text, &no_env, &FakeCatalog).unwrap();
    assert_eq!(config.service.telemetry.metrics.address.as_deref(), Some(":8888"));
    let env = |name: &str| (name == "ADDR").then(|| "127.0.0.1:9999".to_owned());
    let config = load(&text, &env, &FakeCatalog).unwrap();
    assert_eq!(
        config.service.telemetry.metrics.address.as_deref(),
        Some("127.0.0.1:9999")
    );
}

#[test]
fn telemetry_values() {
    let errs = load_err(&format!(
        "{COMPONENTS}\
service:
  telemetry:
    logs:
      level: verbose
      encoding: [json]
    metrics:
      address: 8888
      level: high
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"
    ));
    assert_eq!(
        render(&errs),
        "\
line 21: service.telemetry.logs.level: invalid log level \"verbose\"; expected one of debug, info, warn, error
line 22: service.telemetry.logs.encoding: expected a string, found a list
line 24: service.telemetry.metrics.address: expected an address like \"0.0.0.0:8888\", found a number
line 25: service.telemetry.metrics.level: invalid metrics level \"high\"; expected one of none, basic, normal, detailed
"
    );
    let config = load_ok(&format!(
        "{COMPONENTS}service:\n  telemetry:\n    logs: {{level: WARN, encoding: Console}}\n    metrics: {{level: none, address: ~}}\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
    ));
    assert_eq!(config.service.telemetry.logs.level, LogLevel::Warn);
    assert_eq!(config.service.telemetry.logs.encoding, LogEncoding::Console);
    assert_eq!(config.service.telemetry.metrics.level, MetricsLevel::None);
    for good in ["127.0.0.1:0", "[::1]:65535", "localhost:8888", ":8888"] {
        let config = load_ok(&format!(
            "{COMPONENTS}service:\n  telemetry: {{metrics: {{address: \"{good}\"}}}}\n  pipelines: {{traces: {{receivers: [otlp], exporters: [debug]}}}}\n"
        ));
        assert_eq!(config.service.telemetry.metrics.address.as_deref(), Some(good));
    }
    for bad in [
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1",
        "127.0.0.1:18446744073709551616",
        "",
    ] {
        let errs = load_err(&format!(
            "{COMPONENTS}service:\n  telemetry: {{metrics: {{address: \"{bad}\"}}}}\n  pipelines: {{traces: {{receivers: [otlp], exporters: [debug]}}}}\n"
        ));
        assert_eq!(
            render(&errs),
            format!("line 19: service.telemetry.metrics.address: expected an address like \"0.0.0.0:8888\" (host:port, the port from 0 to 65535), found \"{bad}\"\n")
        );
    }
}

#[test]
fn many_errors_at_once_sorted_by_line() {
    let text = "\
receivers:
  otlp/:
  otlp:
    protocols: {grpc: {endpoint: x}}
processors:
  nope:
exporters:
  debug:
    verbosity: ${env:}
bogus: true
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug, missing]
    metrics:
      receivers: [otlp]
      exporters: [debug]
";
    let errs = load_err(text);
    let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
    assert_eq!(
        render(&errs),
        "\
line 2: receivers.otlp/: invalid component id \"otlp/\": the name after '/' is empty
line 4: receivers.otlp.protocols.grpc.endpoint: must be host:port
line 6: processors.nope: unknown processor type \"nope\"
line 9: exporters.debug.verbosity: missing variable name in \"${env:}\"
line 10: bogus: unknown key \"bogus\"; expected one of receivers, processors, exporters, connectors, extensions, service
line 12: service.extensions[0]: extension \"health_check\" is not defined
line 16: service.pipelines.traces.exporters[1]: exporter \"missing\" is not defined
line 18: service.pipelines.metrics.receivers[0]: receiver \"otlp\" does not support metrics
",
    );
    assert!(lines.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn merge_keys_apply() {
    let config = load_ok(
        "\
receivers:
  otlp: &base
    protocols:
      grpc:
        endpoint: \"a:1\"
  otlp/2:
    <<: *base
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp/2]
      exporters: [debug]
",
    );
    assert_eq!(config.receivers[&id("otlp/2")], config.receivers[&id("otlp")]);
}

#[test]
fn config_error_display() {
    let e = ConfigError {
        path: "service.pipelines.traces.exporters[1]".into(),
        line: Some(12),
        message: "exporter \"otlp/x\" is not defined".into(),
    };
    assert_eq!(
        e.to_string(),
        "line 12: service.pipelines.traces.exporters[1]: exporter \"otlp/x\" is not defined"
    );
    let e = ConfigError {
        path: "a.b".into(),
        line: None,
        message: "m".into(),
    };
    assert_eq!(e.to_string(), "a.b: m");
    let e = ConfigError {
        path: String::new(),
        line: Some(3),
        message: "m".into(),
    };
    assert_eq!(e.to_string(), "line 3: m");
    assert_eq!(FieldError::new("", "m").to_string(), "m");
    assert_eq!(FieldError::new("a", "m").to_string(), "a: m");
}

#[test]
fn load_file_reads_and_reports_io_errors() {
    let missing = std::path::Path::new("/nonexistent/hotspan/config.yaml");
    let errs = load_file(missing, &FakeCatalog).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "");
    assert_eq!(errs[0].line, None);
    assert!(
        errs[0]
            .message
            .starts_with("cannot read config file /nonexistent/hotspan/config.yaml: "),
        "{}",
        errs[0]
    );

    let dir = std::env::temp_dir().join(format!("hotspan-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    let text = format!("{COMPONENTS}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n");
    std::fs::write(&file, text).unwrap();
    let loaded = load_file(&file, &FakeCatalog);
    std::fs::remove_dir_all(&dir).unwrap();
    let config = loaded.unwrap();
    assert_eq!(config.service.pipelines.len(), 1);
}

/// A config whose exporter names `storage`; `extensions` and `started` vary.
fn with_storage(storage: &str, extensions: &str, started: &str) -> String {
    format!(
        "\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  queued:
    storage: {storage}
  queued/idle:
    storage: nowhere
extensions:
{extensions}
service:
  extensions: [{started}]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [queued]
"
    )
}

#[test]
fn an_extension_a_running_component_names_must_exist_be_of_its_type_and_be_started() {
    let file_storage = "  file_storage/q:\n  health_check:";
    // queued/idle names an undefined extension but runs in no pipeline: not reported.
    load(
        &with_storage("file_storage/q", file_storage, "file_storage/q"),
        &no_env,
        &FakeCatalog,
    )
    .map_err(|e| render(&e))
    .unwrap();
    assert_eq!(
        render(&load_err(&with_storage("file_storage/x", file_storage, "file_storage/q"))),
        "line 7: exporters.queued.storage: extension \"file_storage/x\" is not defined (a file_storage extension is needed)\n"
    );
    assert_eq!(
        render(&load_err(&with_storage("health_check", file_storage, "health_check"))),
        "line 7: exporters.queued.storage: extension \"health_check\" is a health_check, not a file_storage\n"
    );
    assert_eq!(
        render(&load_err(&with_storage("file_storage/q", file_storage, "health_check"))),
        "line 7: exporters.queued.storage: extension \"file_storage/q\" is defined but not started: list it in service.extensions\n"
    );
    assert_eq!(
        render(&load_err(&with_storage(
            "\"bad id/\"",
            file_storage,
            "health_check"
        ))),
        format!(
            "line 7: exporters.queued.storage: {}\n",
            "bad id/".parse::<ComponentId>().unwrap_err()
        )
    );
}

#[test]
fn a_value_from_an_unset_variable_says_the_variable_is_not_set() {
    let text = "\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:NOT_SET_ANYWHERE}
      http:
        endpoint: ${env:ALSO_UNSET:-127.0.0.1:4318}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
exporters:
  otlp:
";
    let errs = render(&load_err(text));
    assert!(
        errs.contains(
            "protocols.grpc.endpoint: must be host:port (it comes from ${env:NOT_SET_ANYWHERE}, which is not set)"
        ),
        "{errs}"
    );
    // A default applied: nothing to say about the variable.
    assert!(!errs.contains("ALSO_UNSET"), "{errs}");
}
