//! GOMAXPROCS above the CPU quota: a Go service with more Ps than its quota's cores runs that
//! many threads at once, burns its period's quota early and is stopped for the rest of it.
//! Go 1.25+ derives GOMAXPROCS from the cgroup limit by default, but rounds limits under 2 up
//! to 2; older Go and explicit settings (GOMAXPROCS=, automaxprocs off) use every CPU.

use std::time::Duration;

use bytes::Bytes;

/// expvar vars read as GOMAXPROCS, in order: what a service publishes with
/// `expvar.Publish("gomaxprocs", expvar.Func(...))`, or under runtime/metrics' own name.
const EXPVAR_KEYS: &[&str] = &["gomaxprocs", "GOMAXPROCS", "/sched/gomaxprocs:threads"];
/// What prometheus/client_golang's Go collector exports (v1.20+ by default).
const PROMETHEUS_NAME: &str = "go_sched_gomaxprocs_threads";
/// A `/debug/vars` page is a few KiB (memstats); far more is not one.
const MAX_BODY: usize = 4 << 20;
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// GOMAXPROCS from an expvar JSON page or a Prometheus text page.
pub fn parse(body: &[u8]) -> Result<u32, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the page is not UTF-8 text".to_owned())?;
    let value = if text.trim_start().starts_with('{') {
        let vars: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("not expvar JSON: {e}"))?;
        EXPVAR_KEYS
            .iter()
            .find_map(|k| vars.get(*k).and_then(serde_json::Value::as_f64))
    } else {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(PROMETHEUS_NAME)?;
            // The value follows the name (or its labels) and may be followed by a timestamp.
            let rest = match rest.strip_prefix('{') {
                Some(labelled) => &labelled[labelled.find('}')? + 1..],
                None => rest,
            };
            rest.starts_with(' ').then_some(())?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    match value {
        Some(v) if v >= 1.0 && v <= u32::MAX as f64 && v.fract() == 0.0 => Ok(v as u32),
        Some(v) => Err(format!("GOMAXPROCS {v} is not a count of threads")),
        None => Err(format!(
            "no GOMAXPROCS on the page: publish it with expvar (a var named one of {EXPVAR_KEYS:?}) or \
             serve prometheus/client_golang's {PROMETHEUS_NAME}"
        )),
    }
}

/// Reads at most [`MAX_BODY`] bytes of `url`.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Bytes, String> {
    let mut response = client
        .get(url)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the page is larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// GOMAXPROCS is above the quota when it exceeds the quota's cores rounded up.
pub fn over_quota(gomaxprocs: u32, limit_cores: Option<f64>) -> bool {
    match limit_cores {
        Some(cores) => f64::from(gomaxprocs) > cores.ceil(),
        None => false,
    }
}
