//! OTLP/HTTP: `POST /v1/traces` (and the other signals' paths), protobuf or JSON, optionally
//! compressed (gzip, deflate, zstd, snappy); status codes and error bodies as the OTLP/HTTP spec
//! gives them.

use std::sync::Arc;

use crate::receivers::body::{read_limited, BodyError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use hotspan_config::Signal;
use hotspan_proto::{rpc, Encoding};

use super::config::{HttpConfig, HTTP_ENCODINGS};
use super::INFLATE_INLINE_BYTES;
use crate::consumer::ConsumeError;
use crate::receivers::ingest::{Ingest, IngestError};

#[derive(Clone)]
struct Route {
    signal: Signal,
    ingest: Arc<Ingest>,
    max_body: usize,
    /// `compression_algorithms`: the `Content-Encoding`s taken, "" for none.
    encodings: Arc<[String]>,
    /// `read_timeout`: the body must have arrived this long after its header.
    read_timeout: Option<std::time::Duration>,
}

pub fn router(ingest: Arc<Ingest>, config: &HttpConfig) -> axum::Router {
    let mut router = axum::Router::new();
    let encodings: Arc<[String]> = config.compression_algorithms.iter().cloned().collect();
    for signal in Signal::ALL {
        if !ingest.accepts(signal) {
            continue;
        }
        let route = Route {
            signal,
            ingest: ingest.clone(),
            max_body: config.max_request_body_size,
            encodings: encodings.clone(),
            read_timeout: (!config.read_timeout.is_zero()).then_some(config.read_timeout),
        };
        router = router.route(&config.url_path(signal), post(export).with_state(route));
    }
    router
}

/// What wraps the whole receiver, outside authentication as in otelcol (a browser's preflight
/// carries no credentials): CORS, then `response_headers` on every answer.
pub fn outer_layers(mut router: axum::Router, config: &HttpConfig) -> axum::Router {
    if let Some(cors) = config.cors.as_ref().and_then(super::cors::layer) {
        router = router.layer(cors);
    }
    let extra: Vec<(header::HeaderName, HeaderValue)> = config
        .response_headers
        .iter()
        // Checked at load.
        .filter_map(|(n, v)| {
            Some((
                header::HeaderName::try_from(n).ok()?,
                HeaderValue::try_from(v).ok()?,
            ))
        })
        .collect();
    if !extra.is_empty() {
        router = router.layer(axum::middleware::map_response(move |mut response: Response| {
            let extra = extra.clone();
            async move {
                response.headers_mut().extend(extra);
                response
            }
        }));
    }
    router
}

/// A refusal: status, the `google.rpc.Status` code, and a message for the client.
struct Refusal {
    status: StatusCode,
    code: tonic::Code,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, code: tonic::Code, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn into_response(self, encoding: Encoding) -> Response {
        let body = rpc::Status::new(self.code as i32, self.message).encode(encoding);
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, encoding.content_type())],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

async fn export(State(route): State<Route>, headers: HeaderMap, body: Body) -> Response {
    // Errors are written in the request's encoding when it is known, else JSON.
    let encoding = match request_encoding(&headers) {
        Some(e) => e,
        None => {
            route.ingest.bad_request(route.signal, "unsupported content type");
            let got = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            return Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                format!(
                    "content type {got:?} is not supported; use application/x-protobuf or application/json"
                ),
            )
            .into_response(Encoding::Json);
        }
    };
    match handle(&route, &headers, body, encoding).await {
        Ok(accepted) => {
            let body = rpc::export_response(route.signal, accepted.rejected, &accepted.message, encoding);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, encoding.content_type())],
                body,
            )
                .into_response()
        }
        Err(refusal) => refusal.into_response(encoding),
    }
}

async fn handle(
    route: &Route,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<crate::receivers::ingest::Accepted, Refusal> {
    let bad = |status, message: String| {
        route.ingest.bad_request(route.signal, &message);
        Refusal::new(status, tonic::Code::InvalidArgument, message)
    };
    // Admission before the body is read: a pipeline over its memory limit costs a refusal,
    // not a buffered body.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    route.ingest.admit(route.signal, declared).map_err(refusal_of)?;
    let read = read_limited(body, route.max_body);
    let read = match route.read_timeout {
        Some(limit) => match tokio::time::timeout(limit, read).await {
            Ok(read) => read,
            Err(_) => {
                return Err(bad(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body did not arrive within read_timeout ({limit:?})"),
                ))
            }
        },
        None => read.await,
    };
    let raw = match read {
        Ok(raw) => raw,
        Err(BodyError::TooLarge) => {
            return Err(bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {} bytes", route.max_body),
            ))
        }
        Err(BodyError::Read(e)) => {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                format!("could not read request body: {e}"),
            ))
        }
    };
    let raw_len = raw.len();
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let limit = route.max_body;
    let named = match content_encoding.as_deref() {
        None | Some("identity") => "",
        Some(name) => name,
    };
    if HTTP_ENCODINGS.contains(&named) && !route.encodings.iter().any(|e| e == named) {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            format!("content encoding {named:?} is not taken here (compression_algorithms)"),
        ));
    }
    let payload = match content_encoding.as_deref() {
        None | Some("") | Some("identity") => raw,
        Some(name @ ("gzip" | "deflate" | "zlib" | "zstd" | "snappy" | "x-snappy-framed" | "lz4")) => {
            let name = name.to_string();
            let inflate = move || inflate(&name, &raw, limit);
            // Inflating megabytes takes milliseconds of CPU: on a blocking thread, so one
            // client's big body does not hold an async worker every other request needs.
            let inflated = if raw_len > INFLATE_INLINE_BYTES {
                tokio::task::spawn_blocking(inflate).await.unwrap_or_else(|e| {
                    Err((
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("inflating the body: {e}"),
                    ))
                })
            } else {
                inflate()
            };
            inflated.map_err(|(status, msg)| bad(status, msg))?
        }
        Some(other) => {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "content encoding {other:?} is not supported; use gzip, zstd, snappy, x-snappy-framed, zlib, deflate or lz4"
                ),
            ))
        }
    };
    route
        .ingest
        .otlp(route.signal, payload, encoding)
        .await
        .map_err(refusal_of)
}

/// OTLP/HTTP's mapping of why a request was not taken.
fn refusal_of(e: IngestError) -> Refusal {
    match e {
        IngestError::BadData(msg) => Refusal::new(StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, msg),
        IngestError::NoPipeline(s) => Refusal::new(
            StatusCode::NOT_FOUND,
            tonic::Code::Unimplemented,
            format!("no pipeline takes {s} here"),
        ),
        IngestError::Refused(ConsumeError::Permanent(msg)) => {
            Refusal::new(StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, msg)
        }
        IngestError::Refused(ConsumeError::Retryable {
            reason, retry_after, ..
        }) => Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: tonic::Code::Unavailable,
            message: reason,
            retry_after: Some(retry_after.map_or(1, |d| d.as_secs().max(1))),
        },
    }
}

fn request_encoding(headers: &HeaderMap) -> Option<Encoding> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// `raw` inflated as its `Content-Encoding` `name` says, at most `limit` bytes: every codec
/// otelcol's HTTP receivers read, as its exporters write them (`deflate` is zlib's format, as
/// in HTTP and otelcol; `lz4` its frame format).
fn inflate(name: &str, raw: &[u8], limit: usize) -> Result<Bytes, (StatusCode, String)> {
    use hotspan_proto::compression::{decompress, Compression, CompressionError};
    // The framed format's first chunk: its stream identifier.
    const SNAPPY_FRAMED: &[u8] = b"\xff\x06\x00\x00sNaPpY";
    let codec = match name {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        // otelcol before v0.131 wrote the framed format as `snappy`; otelcol's receivers tell
        // the two apart by the stream identifier, and so does this one.
        "snappy" if !raw.starts_with(SNAPPY_FRAMED) => Compression::Snappy,
        "snappy" | "x-snappy-framed" => Compression::SnappyFramed,
        "lz4" => Compression::Lz4,
        "zlib" => Compression::Zlib,
        _ => Compression::Deflate,
    };
    decompress(codec, raw, limit)
        .map(Bytes::from)
        .map_err(|e| match e {
            CompressionError::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{name} body inflates past {limit} bytes"),
            ),
            e => (StatusCode::BAD_REQUEST, format!("{name} body: {e}")),
        })
}
