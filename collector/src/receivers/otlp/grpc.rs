//! OTLP/gRPC: `<Signal>Service/Export`, one unary method per signal. Message bytes come in
//! raw (inflated here, bounded by tonic) and are decoded by `Ingest`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hotspan_config::Signal;
use hotspan_proto::{rpc, Encoding};
use tonic::codec::{CompressionEncoding, EnabledCompressionEncodings};
use tonic::server::{Grpc, UnaryService};
use tonic::{Code, Status};

use crate::consumer::{BoxFuture, ConsumeError};
use crate::extensions::bearertokenauth::ServerAuth;
use crate::grpc::{export_path, RawCodec};
use crate::receivers::ingest::{Ingest, IngestError};

use super::INFLATE_INLINE_BYTES;

/// The export services; with `auth`, every call must carry its token.
pub fn routes(
    ingest: Arc<Ingest>,
    max_message_size: usize,
    auth: Option<ServerAuth>,
) -> tonic::service::Routes {
    let mut router = axum::Router::new();
    for signal in Signal::ALL {
        if ingest.accepts(signal) {
            let svc = ExportService {
                signal,
                ingest: ingest.clone(),
                max_message_size,
            };
            router = router.route_service(export_path(signal), svc);
        }
    }
    let router = router.fallback(|| async {
        let (parts, ()) = Status::unimplemented("no such service or method")
            .into_http::<()>()
            .into_parts();
        http::Response::from_parts(parts, tonic::body::Body::empty())
    });
    tonic::service::Routes::from(ServerAuth::guard(auth, router))
}

#[derive(Clone)]
struct ExportService {
    signal: Signal,
    ingest: Arc<Ingest>,
    max_message_size: usize,
}

impl tonic::codegen::Service<http::Request<axum::body::Body>> for ExportService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let req = match inflate_message(req, this.max_message_size).await {
                Ok(req) => req,
                Err(status) => {
                    this.ingest.bad_request(this.signal, status.message());
                    let (parts, ()) = status.into_http::<()>().into_parts();
                    return Ok(http::Response::from_parts(parts, tonic::body::Body::empty()));
                }
            };
            // Only advertised (`grpc-accept-encoding`): `inflate_message` has inflated the
            // message already.
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = Grpc::new(RawCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(this.max_message_size), None);
            Ok(grpc
                .unary(
                    Handler {
                        signal: this.signal,
                        ingest: this.ingest,
                    },
                    req,
                )
                .await)
        })
    }
}

/// Compressed messages (otelcol's gRPC codecs: gzip, zstd, snappy) are inflated here, bounded
/// as tonic bounds, into the uncompressed message tonic then reads as usual. gzip too: tonic's
/// own reads only a body's first gzip member and ignores the rest, where Go's reader (so
/// otelcol's) reads every member; a client would be told "ok" for spans never read.
async fn inflate_message(
    req: http::Request<axum::body::Body>,
    max_message_size: usize,
) -> Result<http::Request<axum::body::Body>, Status> {
    use hotspan_proto::compression::{decompress_grpc_frame, Compression, CompressionError};
    let codec = match req.headers().get("grpc-encoding").and_then(|v| v.to_str().ok()) {
        Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some("snappy") => Compression::Snappy,
        _ => return Ok(req),
    };
    let (mut parts, body) = req.into_parts();
    // A compressed message can be a little larger than the plain one (snappy's worst case).
    let bound = max_message_size + max_message_size / 6 + 64;
    let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, bound))
        .await
        .map_err(|e| Status::resource_exhausted(format!("reading the request: {e}")))?
        .to_bytes();
    let frame = match bytes.first() {
        None => return Err(Status::invalid_argument("no message")),
        Some(0) => {
            // Not compressed after all: let tonic read it (the header no longer applies).
            parts.headers.remove("grpc-encoding");
            return Ok(http::Request::from_parts(parts, axum::body::Body::from(bytes)));
        }
        Some(_) => {
            let len = bytes
                .get(1..5)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| Status::invalid_argument("truncated message frame"))?;
            if bytes.len() != 5 + len {
                return Err(Status::invalid_argument("one unary message expected, whole"));
            }
            let inflate = move || {
                decompress_grpc_frame(codec, bytes.get(5..).unwrap_or_default(), max_message_size).map_err(
                    |e| match e {
                        CompressionError::TooLarge(n) => {
                            Status::resource_exhausted(format!("the message inflates past {n} bytes"))
                        }
                        e => Status::invalid_argument(e.to_string()),
                    },
                )
            };
            if len > INFLATE_INLINE_BYTES {
                tokio::task::spawn_blocking(inflate)
                    .await
                    .unwrap_or_else(|e| Err(Status::internal(format!("inflating the message: {e}"))))?
            } else {
                inflate()?
            }
        }
    };
    parts.headers.remove("grpc-encoding");
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(http::Request::from_parts(parts, axum::body::Body::from(frame)))
}

struct Handler {
    signal: Signal,
    ingest: Arc<Ingest>,
}

impl UnaryService<Bytes> for Handler {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (signal, ingest) = (self.signal, self.ingest.clone());
        Box::pin(async move {
            let body = request.into_inner();
            // Admission before decoding (tonic has already read the bounded message).
            if let Err(e) = ingest.admit(signal, body.len()) {
                return Err(status_of(e));
            }
            match ingest.otlp(signal, body, Encoding::Protobuf).await {
                Ok(accepted) => Ok(tonic::Response::new(Bytes::from(rpc::export_response(
                    signal,
                    accepted.rejected,
                    &accepted.message,
                    Encoding::Protobuf,
                )))),
                Err(e) => Err(status_of(e)),
            }
        })
    }
}

/// OTLP/gRPC's mapping: retryable refusals are UNAVAILABLE, bad data INVALID_ARGUMENT.
fn status_of(err: IngestError) -> Status {
    match err {
        IngestError::BadData(msg) => Status::invalid_argument(msg),
        IngestError::NoPipeline(signal) => {
            Status::new(Code::Unimplemented, format!("no pipeline takes {signal} here"))
        }
        IngestError::Refused(ConsumeError::Permanent(msg)) => Status::invalid_argument(msg),
        IngestError::Refused(ConsumeError::Retryable { reason, .. }) => Status::unavailable(reason),
    }
}
