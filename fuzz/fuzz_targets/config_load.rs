//! Any text as a config file: a list of problems, never a panic or a hang.
#![no_main]

use hotspan_config::{Catalog, Checked, ComponentInfo, ComponentValue, FieldError, Kind, Parsed, Signal};
use libfuzzer_sys::fuzz_target;

/// Knows every type and accepts every component config, so the fuzzer reaches the rules
/// between parts.
struct AnyCatalog;

impl Catalog for AnyCatalog {
    fn component(&self, kind: Kind, _type_name: &str) -> Option<ComponentInfo> {
        Some(match kind {
            Kind::Connector => ComponentInfo::Connector(vec![(Signal::Traces, Signal::Traces)]),
            Kind::Extension => ComponentInfo::Extension,
            _ => ComponentInfo::Signals(Signal::ALL.to_vec()),
        })
    }
    fn check(&self, _kind: Kind, type_name: &str, _config: &ComponentValue) -> Result<Checked, Vec<FieldError>> {
        // Some types cannot take metrics, so the rule for that is reached too.
        let cannot_take = match type_name.len() % 3 {
            0 => vec![(Signal::Metrics, "no URL for metrics".to_string())],
            _ => Vec::new(),
        };
        Ok(Checked {
            parsed: Parsed::default(),
            extensions: Vec::new(),
            cannot_take,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = |name: &str| (name.len() % 2 == 0).then(|| format!("${{env:{name}}}"));
        let _ = hotspan_config::load(text, &env, &AnyCatalog);
    }
});
