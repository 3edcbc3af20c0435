use super::*;

#[test]
fn pyroscope_names_split_into_service_and_tags() {
    let (app, tags) = parse_name("shop.cpu{env=prod, region=eu-1}").expect("parses");
    assert_eq!(app, "shop.cpu");
    assert_eq!(service_of(&app), "shop");
    assert_eq!(
        tags,
        vec![
            ("env".to_string(), "prod".to_string()),
            ("region".to_string(), "eu-1".to_string())
        ]
    );
    assert_eq!(
        parse_name("plain").expect("parses"),
        ("plain".to_string(), vec![])
    );
    assert_eq!(service_of("shop.alloc_space"), "shop");
    assert_eq!(service_of("shop.v2"), "shop.v2");
    assert!(parse_name("shop{env=prod").is_err());
    assert!(parse_name("shop{env}").is_err());
    assert!(parse_name("{env=prod}").is_err());
}

#[test]
fn times_are_told_apart_by_digit_count() {
    let ns = 1_700_000_000_000_000_000u64;
    assert_eq!(parse_time("1700000000"), Some(ns));
    assert_eq!(parse_time("1700000000000"), Some(ns));
    assert_eq!(parse_time("1700000000000000"), Some(ns));
    assert_eq!(parse_time("1700000000000000000"), Some(ns));
    assert_eq!(parse_time("soon"), None);
}

#[test]
fn config_defaults_and_checks() {
    let cfg: PprofConfig = hotspan_config::parse_yaml("{}").expect("parses");
    assert_eq!(cfg, PprofConfig::default());
    let errs =
        hotspan_config::yaml_errors::<PprofConfig>("{endpoint: nope, correlation: {span_id_labels: [sid]}}");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "endpoint");
    let sizes = |n: u64| {
        hotspan_config::yaml_errors::<PprofConfig>(&format!("max_request_body_size: {n}"))
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert!(sizes(2 << 30).is_empty());
    let refused =
        ["max_request_body_size: must be from 1 to 2147483648 (2 GiB, the largest protobuf message)"];
    assert_eq!(sizes(0), refused);
    assert_eq!(sizes((2 << 30) + 1), refused);
    assert_eq!(sizes(u64::MAX), refused);
}
