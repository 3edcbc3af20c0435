//! One target's HTTP client: TLS per its `tls` block (the connector the exporters dial with),
//! its headers and bearer token on every request, and failures that say what went wrong
//! (connection refused, TLS, timeout, the HTTP status and the start of the body).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;

use super::config::Target;
use crate::component::{BoxError, BuildContext};
use crate::extensions::bearertokenauth::BearerTokenAuth;
use crate::net::error_chain;
use crate::tls::{Connector, ALPN_HTTP};

/// How much of an error response's body goes into the log: enough for Go's one-line
/// messages ("Could not enable tracing: ..."), not a whole HTML page.
const SNIPPET_BYTES: usize = 300;

/// Why a request did not produce a body.
#[derive(Debug)]
pub enum FetchError {
    /// Unreachable, refused, TLS, an HTTP error status, cut short: the target or the network.
    Failed(String),
    /// The body is larger than the receiver takes.
    TooLarge { limit: usize },
}

pub struct TargetClient {
    /// Pools connections to the one target (HTTP/1.1, or h2 when TLS negotiates it).
    client: Client<Connector, Empty<Bytes>>,
    /// `headers` from the config.
    headers: HeaderMap,
    /// Adds its token (read fresh, for rotation) to every request.
    auth: Option<Arc<BearerTokenAuth>>,
}

impl TargetClient {
    /// Reads the target's TLS files and finds its authenticator: errors name the config path.
    pub fn new(
        target: &Target,
        path: &str,
        ctx: &BuildContext,
        connect_timeout: Duration,
    ) -> Result<Self, BoxError> {
        let connector = target
            .tls
            .connector(&target.endpoint, ALPN_HTTP, connect_timeout)
            .map_err(|e| format!("{path}.{e}"))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &target.headers {
            headers.insert(
                HeaderName::try_from(k.as_str()).map_err(|e| format!("{path}.headers.{k}: {e}"))?,
                HeaderValue::try_from(v.as_str()).map_err(|e| format!("{path}.headers.{k}: {e}"))?,
            );
        }
        let auth = target
            .auth
            .as_ref()
            .map(|a| a.find(ctx, &format!("{path}.auth")))
            .transpose()?;
        Ok(TargetClient {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
            headers,
            auth,
        })
    }

    /// GETs `url` and waits for the response head. A status other than 2xx is a failure that
    /// quotes the start of the body. The caller bounds the time.
    pub async fn get(&self, url: &str) -> Result<Response<Incoming>, FetchError> {
        let mut request = Request::get(url);
        if let Some(headers) = request.headers_mut() {
            headers.extend(self.headers.clone());
            if let Some(auth) = &self.auth {
                let (name, value) = auth.header();
                headers.insert(name, value);
            }
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| FetchError::Failed(format!("{url}: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| FetchError::Failed(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let snippet = snippet(response.into_body()).await;
            return Err(FetchError::Failed(format!("HTTP {status}: {snippet}")));
        }
        Ok(response)
    }
}

/// The whole body, refused once it passes `limit` bytes.
pub async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, FetchError> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| FetchError::Failed(format!("reading the body: {}", error_chain(&e))))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(FetchError::TooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// The start of an error response's body as one line of text; whatever could be read.
async fn snippet(mut body: Incoming) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < SNIPPET_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(SNIPPET_BYTES);
    let text = String::from_utf8_lossy(&bytes);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "(empty body)".into()
    } else {
        line
    }
}
