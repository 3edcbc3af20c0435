//! The `health_check` extension: 200 while pipelines run, 503 while starting or stopping.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hotspan_config::{ComponentConfig, FieldError};
use serde::Deserialize;
use tracing::info;

use crate::component::{BoxError, BuildContext, BuiltExtension, ComponentType, ExtensionType, Lifecycle};
use crate::net::{bind, serve_http, ServerHandle};
use crate::receivers::otlp::check_endpoint;
use crate::telemetry::{Status, Telemetry};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub endpoint: String,
    pub path: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: "127.0.0.1:13133".into(),
            path: "/".into(),
        }
    }
}

impl ComponentConfig for HealthCheckConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        check_endpoint(&self.endpoint, "endpoint", errs);
        if !self.path.starts_with('/') {
            errs.push(FieldError {
                path: "path".into(),
                message: "must start with /".into(),
            });
        }
    }
}

impl ComponentType for HealthCheck {
    const TYPE_NAME: &'static str = "health_check";
    type Config = HealthCheckConfig;
}

impl ExtensionType for HealthCheck {
    fn build(ctx: &BuildContext, config: HealthCheckConfig) -> Result<BuiltExtension, BoxError> {
        Ok(BuiltExtension::of(Arc::new(HealthCheck {
            name: ctx.name(),
            config,
            telemetry: ctx.telemetry.clone(),
            server: Mutex::new(None),
        })))
    }
}

pub struct HealthCheck {
    name: String,
    config: HealthCheckConfig,
    telemetry: Arc<Telemetry>,
    server: Mutex<Option<ServerHandle>>,
}

async fn health(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    match telemetry.status() {
        Status::Running => (StatusCode::OK, "{\"status\":\"Server available\"}"),
        Status::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"Server starting\"}",
        ),
        Status::Stopping => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"Server shutting down\"}",
        ),
    }
}

#[async_trait]
impl Lifecycle for HealthCheck {
    async fn start(&self) -> Result<(), BoxError> {
        let router = axum::Router::new()
            .route(&self.config.path, axum::routing::get(health))
            .with_state(self.telemetry.clone());
        let server = serve_http(
            bind(&self.config.endpoint).await?,
            router,
            tracing::Span::current(),
        )?;
        info!(extension = %self.name, address = %server.addr, "health check listening");
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server {
            server.stop(deadline).await;
        }
    }
}
