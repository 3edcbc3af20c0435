//! The `load_balancing` exporter's config, in otelcol's `loadbalancingexporter` shape.

use std::time::Duration;

use hotspan_config::{bounds, ComponentConfig, ExtensionRef, FieldError};
use serde::Deserialize;

use crate::exporters::otlp_grpc::OtlpGrpcConfig;

/// What decides the backend of a span or sample.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum RoutingKey {
    /// Every span and every linked sample of one trace reach the same backend (the join needs
    /// them together). Samples with no trace id go by their resource's `service.name`.
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    /// Everything of one `service.name` reaches the same backend.
    #[serde(rename = "service")]
    Service,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoadBalancingConfig {
    pub routing_key: RoutingKey,
    /// Where the backends come from: exactly one of `static` and `dns`.
    pub resolver: ResolverConfig,
    pub protocol: ProtocolConfig,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    #[serde(rename = "static")]
    pub static_list: Option<StaticResolver>,
    pub dns: Option<DnsResolver>,
}

/// A fixed list of backends; one that fails is left out of the ring for a while.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StaticResolver {
    /// `host:port` of each backend; a host alone is on OTLP/gRPC's port ([`dial_address`]).
    pub hostnames: Vec<String>,
}

/// Where a backend is dialled: one written without a port gets 4317, as otelcol gives it
/// (dialled as it was, it went to port 80). The ring keeps the name as written, as otelcol's
/// does, so both place it at the same points.
pub fn dial_address(hostname: &str) -> String {
    match format!("http://{hostname}").parse::<http::Uri>() {
        Ok(uri) if uri.port().is_none() => format!("{hostname}:4317"),
        _ => hostname.to_string(),
    }
}

/// Backends are the addresses `hostname` resolves to (a headless Kubernetes service, say),
/// looked up again every `interval`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsResolver {
    pub hostname: String,
    pub port: u16,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub interval: Duration,
    /// Per lookup.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub timeout: Duration,
}

impl Default for DnsResolver {
    fn default() -> Self {
        DnsResolver {
            hostname: String::new(),
            port: 4317,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        }
    }
}

/// How to talk to each backend.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// The `otlp_grpc` exporter's settings; `endpoint` is each backend's, filled in per
    /// backend. `sending_queue` and `retry_on_failure` apply once, in front of the routing,
    /// so queued data is routed when it is sent and re-routed when its backend goes.
    pub otlp: OtlpGrpcConfig,
}

impl ComponentConfig for LoadBalancingConfig {
    fn extensions(&self) -> Vec<ExtensionRef> {
        let otlp = &self.protocol.otlp;
        let auth = otlp.auth.as_ref().map(|a| a.extension_ref("protocol.otlp.auth"));
        auth.into_iter()
            .chain(otlp.sending_queue.extension_ref("protocol.otlp.sending_queue"))
            .collect()
    }

    fn validate(&self, errs: &mut Vec<FieldError>) {
        let r = &self.resolver;
        match (&r.static_list, &r.dns) {
            (None, None) => errs.push(FieldError {
                path: "resolver".into(),
                message: "needs one of static or dns".into(),
            }),
            (Some(_), Some(_)) => errs.push(FieldError {
                path: "resolver".into(),
                message: "takes one of static or dns, not both".into(),
            }),
            _ => {}
        }
        if let Some(s) = &r.static_list {
            if s.hostnames.is_empty() {
                errs.push(FieldError {
                    path: "resolver.static.hostnames".into(),
                    message: "must list at least one host:port".into(),
                });
            }
            for (i, h) in s.hostnames.iter().enumerate() {
                if h.is_empty() || h.contains("://") || format!("http://{h}").parse::<http::Uri>().is_err() {
                    errs.push(FieldError {
                        path: format!("resolver.static.hostnames[{i}]"),
                        message: format!("\"{h}\" is not host:port"),
                    });
                }
            }
        }
        if let Some(d) = &r.dns {
            if d.hostname.is_empty() {
                errs.push(FieldError {
                    path: "resolver.dns.hostname".into(),
                    message: "is required".into(),
                });
            }
            if d.port == 0 {
                errs.push(FieldError {
                    path: "resolver.dns.port".into(),
                    message: "must be a port backends listen on (1 to 65535)".into(),
                });
            }
            // Past an hour between lookups, backends that moved are missed for too long.
            let hour = Duration::from_secs(3600);
            for (name, value) in [("interval", d.interval), ("timeout", d.timeout)] {
                bounds::check_duration(
                    value,
                    Duration::from_nanos(1)..=hour,
                    format!("resolver.dns.{name}"),
                    errs,
                );
            }
        }
        let otlp = &self.protocol.otlp;
        if !otlp.endpoint.is_empty() {
            errs.push(FieldError {
                path: "protocol.otlp.endpoint".into(),
                message: "is set per backend by the resolver; leave it out".into(),
            });
        }
        // The per-backend checks, on a stand-in endpoint of the same shape.
        let mut backend = otlp.clone();
        backend.endpoint = "backend:4317".into();
        let mut inner = Vec::new();
        backend.validate(&mut inner);
        errs.extend(inner.into_iter().map(|e| FieldError {
            path: format!("protocol.otlp.{}", e.path),
            message: e.message,
        }));
    }
}

impl LoadBalancingConfig {
    /// The `otlp_grpc` config for one backend.
    pub fn backend(&self, endpoint: &str) -> OtlpGrpcConfig {
        let mut config = self.protocol.otlp.clone();
        config.endpoint = endpoint.to_string();
        config
    }
}
