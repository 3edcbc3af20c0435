use hotspan_config::{parse_yaml, yaml_errors, ComponentConfig};

use super::*;

#[test]
fn defaults_follow_alloy() {
    let cfg: PprofScrapeConfig =
        parse_yaml("{targets: [{endpoint: 'http://127.0.0.1:6060', service_name: shop}]}").expect("parses");
    assert_eq!(cfg.scrape_interval, Duration::from_secs(15));
    assert_eq!(cfg.profiles, vec![ProfileKind::Cpu]);
    assert_eq!(cfg.timeout_for(ProfileKind::Cpu), Duration::from_secs(25));
    assert_eq!(cfg.timeout_for(ProfileKind::Heap), Duration::from_secs(10));
    assert_eq!(cfg.timeout_for(ProfileKind::Trace), Duration::from_secs(15));
    assert_eq!(cfg.period_for(ProfileKind::Goroutine), Duration::from_secs(1));
    assert_eq!(cfg.period_for(ProfileKind::Heap), Duration::from_secs(15));
    // Traces back to back unless told otherwise.
    assert_eq!(cfg.period_for(ProfileKind::Trace), Duration::from_secs(5));
    assert_eq!(cfg.max_trace_bytes, 64 << 20);
    assert!(cfg.extensions().is_empty());
}

#[test]
fn new_keys_parse_as_go_durations() {
    let cfg: PprofScrapeConfig = parse_yaml(
        "{goroutine_interval: 250ms, trace_duration: 1500ms, trace_interval: 1m, max_trace_bytes: 1048576,
          profiles: [cpu, goroutine, trace],
          targets: [{endpoint: 'https://shop:6060', service_name: shop,
                     tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_name_override: shop.internal},
                     auth: {authenticator: bearertokenauth/shop},
                     headers: {X-Scope-OrgID: tenant-1}}]}",
    )
    .expect("parses");
    assert_eq!(cfg.period_for(ProfileKind::Goroutine), Duration::from_millis(250));
    assert_eq!(cfg.period_for(ProfileKind::Trace), Duration::from_secs(60));
    assert_eq!(cfg.timeout_for(ProfileKind::Trace), Duration::from_millis(11_500));
    let refs = cfg.extensions();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].path.as_str(), refs[0].id.as_str(), refs[0].type_name),
        (
            "targets[0].auth.authenticator",
            "bearertokenauth/shop",
            "bearertokenauth"
        )
    );
}

#[test]
fn every_problem_is_reported() {
    let errs = yaml_errors::<PprofScrapeConfig>(
            "{scrape_interval: 1500ms, profiles: [], targets: [{endpoint: '127.0.0.1:6060'}, {endpoint: 'http://x', service_name: s}]}",
    );
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "scrape_interval",
            "profiles",
            "targets[0].endpoint",
            "targets[0].service_name"
        ]
    );
    let unknown = yaml_errors::<PprofScrapeConfig>("{profiles: [threads]}");
    assert_eq!(unknown.len(), 1, "{unknown:?}");
}

#[test]
fn every_bound_of_the_new_keys_is_checked() {
    let errs = yaml_errors::<PprofScrapeConfig>(
        "{goroutine_interval: 50ms, trace_duration: 500ms, trace_interval: 200ms, max_trace_bytes: 1000,
          scrape_timeout: 2h, profiles: [trace, cpu, trace],
          targets: [{endpoint: 'http://shop:6060', service_name: shop,
                     tls: {ca_file: ca.pem, cert_file: c.pem, min_version: '1.1'},
                     auth: {authenticator: 'not an id!'},
                     headers: {'bad header': x}}]}",
    );
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "scrape_timeout",
            "goroutine_interval",
            "trace_duration",
            "trace_interval",
            "max_trace_bytes",
            "profiles[2]",
            "targets[0].tls.key_file",
            "targets[0].tls.min_version",
            "targets[0].tls",
            "targets[0].auth.authenticator",
            "targets[0].headers.bad header",
        ],
        "{errs:?}"
    );
    let too_long = yaml_errors::<PprofScrapeConfig>(
        "{goroutine_interval: 2h, trace_duration: 2h, trace_interval: 3h, max_trace_bytes: 2147483648,
          targets: [{endpoint: 'http://shop:6060', service_name: shop}]}",
    );
    let paths: Vec<&str> = too_long.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "goroutine_interval",
            "trace_duration",
            "trace_interval",
            "max_trace_bytes"
        ]
    );
    // `insecure` alone on an http:// target is harmless: it only says "plaintext".
    assert!(yaml_errors::<PprofScrapeConfig>(
        "{targets: [{endpoint: 'http://shop:6060', service_name: shop, tls: {insecure: true}}]}"
    )
    .is_empty());
}

#[test]
fn trace_seconds_are_written_as_go_parses_them() {
    assert_eq!(seconds(Duration::from_secs(5)), "5");
    assert_eq!(seconds(Duration::from_millis(1500)), "1.500");
}
