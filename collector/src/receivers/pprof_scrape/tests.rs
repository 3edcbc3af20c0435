use hotspan_config::{parse_yaml, yaml_errors};

use super::*;

#[test]
fn defaults_follow_alloy() {
    let cfg: PprofScrapeConfig =
        parse_yaml("{targets: [{endpoint: 'http://127.0.0.1:6060', service_name: shop}]}").expect("parses");
    assert_eq!(cfg.scrape_interval, Duration::from_secs(15));
    assert_eq!(cfg.profiles, vec![ProfileKind::Cpu]);
    assert_eq!(cfg.timeout_for(ProfileKind::Cpu), Duration::from_secs(25));
    assert_eq!(cfg.timeout_for(ProfileKind::Heap), Duration::from_secs(10));
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
