use hotspan_config::{parse_yaml, yaml_errors};

use super::*;

#[test]
fn present_protocol_with_no_settings_gets_defaults() {
    let cfg: OtlpReceiverConfig = parse_yaml("protocols: {grpc: null}").expect("parses");
    assert_eq!(cfg.protocols.grpc, Some(GrpcConfig::default()));
    assert_eq!(cfg.protocols.http, None);
}

#[test]
fn config_round_trips_known_keys_and_refuses_others() {
    let cfg: OtlpReceiverConfig = parse_yaml(
        "protocols: {grpc: {endpoint: '0.0.0.0:5317', max_recv_msg_size_mib: 8}, http: {endpoint: 'localhost:5318', max_request_body_size: 1000}}",
    )
    .expect("parses");
    let g = cfg.protocols.grpc.expect("grpc");
    assert_eq!(
        (g.endpoint.as_str(), g.max_recv_msg_size_mib),
        ("0.0.0.0:5317", 8)
    );
    assert_eq!(cfg.protocols.http.expect("http").max_request_body_size, 1000);

    let errs = yaml_errors::<OtlpReceiverConfig>("protocols: {grpc: {endpont: x}}");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].path.starts_with("protocols.grpc"), "{errs:?}");
}

#[test]
fn validation_reports_each_problem_with_its_path() {
    let errs = yaml_errors::<OtlpReceiverConfig>(
        "protocols: {grpc: {endpoint: 'nohost', max_recv_msg_size_mib: 0}, http: {compression_algorithms: [gzip, br], response_headers: {'bad name': x}, cors: {allowed_origins: ['https://*.*.example']}}}",
    );
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "protocols.grpc.endpoint",
            "protocols.grpc.max_recv_msg_size_mib",
            "protocols.http.compression_algorithms",
            "protocols.http.response_headers.bad name",
            "protocols.http.cors.allowed_origins",
        ]
    );
    let none = yaml_errors::<OtlpReceiverConfig>("protocols: {}");
    assert_eq!(none[0].path, "protocols");
}

#[test]
fn request_size_limits_are_bounded_by_the_largest_protobuf_message() {
    let ok = "protocols: {grpc: {max_recv_msg_size_mib: 2048}, http: {max_request_body_size: 2147483648}}";
    assert_eq!(yaml_errors::<OtlpReceiverConfig>(ok), vec![]);
    // The gRPC limit in bytes overflowed a usize (a panic at start) from 2^44 MiB up.
    let over = "protocols: {grpc: {max_recv_msg_size_mib: 17592186044416}, http: {max_request_body_size: 18446744073709551615}}";
    let errs: Vec<String> = yaml_errors::<OtlpReceiverConfig>(over)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        [
            "protocols.grpc.max_recv_msg_size_mib: must be from 1 to 2048 (2 GiB, the largest protobuf message)",
            "protocols.http.max_request_body_size: must be from 1 to 2147483648 (2 GiB, the largest protobuf message)",
        ]
    );
}

#[test]
fn grpc_keepalive_takes_otelcols_keys() {
    let ok = "protocols: {grpc: {max_concurrent_streams: 8, keepalive: {server_parameters: {max_connection_idle: 15s, max_connection_age: 30s, max_connection_age_grace: 5s, time: 1m, timeout: 10s}, enforcement_policy: {min_time: 5s, permit_without_stream: true}}}}";
    assert_eq!(yaml_errors::<OtlpReceiverConfig>(ok), vec![]);
    let cfg: OtlpReceiverConfig = parse_yaml(ok).expect("parses");
    let c = cfg.protocols.grpc.expect("grpc").connections();
    assert_eq!(c.max_concurrent_streams, Some(8));
    assert_eq!(c.max_idle, Some(std::time::Duration::from_secs(15)));
    assert_eq!(c.max_age, Some(std::time::Duration::from_secs(30)));
    assert_eq!(c.ping_every, Some(std::time::Duration::from_secs(60)));
    let none: OtlpReceiverConfig = parse_yaml("protocols: {grpc: {}}").expect("parses");
    let c = none.protocols.grpc.expect("grpc").connections();
    assert_eq!(
        (c.max_idle, c.max_age, c.ping_every),
        (None, None, None),
        "grpc-go's defaults: off"
    );
}

#[test]
fn a_url_path_without_its_leading_slash_gets_one() {
    let cfg: OtlpReceiverConfig =
        parse_yaml("protocols: {http: {traces_url_path: 'v1/traces', logs_url_path: '/custom/logs'}}")
            .expect("parses");
    let http = cfg.protocols.http.expect("http");
    assert_eq!(http.url_path(hotspan_config::Signal::Traces), "/v1/traces");
    assert_eq!(http.url_path(hotspan_config::Signal::Logs), "/custom/logs");
}

#[test]
fn http_timeouts_default_as_otelcols_and_fall_back_on_read_timeout_as_gos() {
    use std::time::Duration;
    let http = |yaml: &str| {
        let cfg: OtlpReceiverConfig = parse_yaml(yaml).expect("parses");
        cfg.protocols.http.expect("http")
    };
    let defaults = http("protocols: {http: {}}");
    let c = defaults.connections();
    assert_eq!(
        (
            c.header_read,
            c.idle,
            defaults.write_timeout,
            defaults.read_timeout
        ),
        (
            Some(Duration::from_secs(60)),
            Some(Duration::from_secs(60)),
            Duration::from_secs(30),
            Duration::ZERO
        )
    );
    let c = http("protocols: {http: {read_timeout: 5s, read_header_timeout: 0s, idle_timeout: 0s}}")
        .connections();
    assert_eq!(
        (c.header_read, c.idle),
        (Some(Duration::from_secs(5)), Some(Duration::from_secs(5)))
    );
    let c = http("protocols: {http: {read_header_timeout: 0s, idle_timeout: 0s}}").connections();
    assert_eq!((c.header_read, c.idle), (None, None));
}
