//! CORS for the OTLP/HTTP receiver, as otelcol gives it (`rs/cors`): origins matched without
//! regard to case, each pattern with at most one `*`; credentials allowed; the simple headers
//! always allowed, with `allowed_headers` on top.

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use super::config::CorsConfig;

/// The layer `config` asks for; `None` when it names no origin, so nothing is allowed.
pub fn layer(config: &CorsConfig) -> Option<CorsLayer> {
    if config.allowed_origins.is_empty() {
        return None;
    }
    let patterns: Vec<String> = config
        .allowed_origins
        .iter()
        .map(|o| o.to_ascii_lowercase())
        .collect();
    let origin = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
        origin
            .to_str()
            .is_ok_and(|o| patterns.iter().any(|p| matches(p, &o.to_ascii_lowercase())))
    });
    let headers = if config.allowed_headers.iter().any(|h| h == "*") {
        AllowHeaders::mirror_request()
    } else {
        let mut names = vec![
            header::ACCEPT,
            header::ACCEPT_LANGUAGE,
            header::CONTENT_TYPE,
            header::CONTENT_LANGUAGE,
        ];
        if config.allowed_headers.is_empty() {
            names.push(HeaderName::from_static("x-requested-with"));
        }
        // Checked at load.
        names.extend(
            config
                .allowed_headers
                .iter()
                .filter_map(|h| HeaderName::try_from(h).ok()),
        );
        AllowHeaders::list(names)
    };
    let exposed: Vec<HeaderName> = config
        .exposed_headers
        .iter()
        .filter_map(|h| HeaderName::try_from(h).ok())
        .collect();
    let mut layer = CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::POST, Method::HEAD])
        .allow_headers(headers)
        .allow_credentials(true)
        .expose_headers(exposed);
    if config.max_age > 0 {
        layer = layer.max_age(std::time::Duration::from_secs(config.max_age.into()));
    }
    Some(layer)
}

/// `origin` against `pattern`: equal, or with `*` standing for any run of characters.
fn matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == origin,
        Some((prefix, suffix)) => {
            origin.len() >= prefix.len() + suffix.len()
                && origin.starts_with(prefix)
                && origin.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn origins_match_as_otelcol_matches_them() {
        assert!(matches("*", "https://anything.example"));
        assert!(matches("https://app.example.com", "https://app.example.com"));
        assert!(!matches(
            "https://app.example.com",
            "https://app.example.com.evil"
        ));
        assert!(matches("https://*.example.com", "https://a.b.example.com"));
        assert!(!matches("https://*.example.com", "https://example.com"));
        assert!(!matches("https://*.example.com", "http://a.example.com"));
        assert!(matches("http://127.0.0.1:*", "http://127.0.0.1:8080"));
    }
}
