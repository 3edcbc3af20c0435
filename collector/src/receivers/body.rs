//! Reading an HTTP request body within a size limit.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use hotspan_config::FieldError;
use http_body_util::BodyExt;

/// Past the limit, how much more is read and thrown away, and for how long, before the 413
/// goes out. hyper closes a connection whose request body it did not finish at once (no
/// lingering close), so a client still sending would see a reset instead of the answer;
/// reading on lets a modestly oversized request get its 413.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The largest request a receiver may be set to take: a request is held whole in memory, and
/// OTLP and pprof are protobuf, whose messages cannot exceed 2 GiB.
pub const MAX_LIMIT: usize = 2 << 30;

/// A receiver's request size limit, in `unit`s: at least one, and at most [`MAX_LIMIT`].
pub fn check_limit(value: usize, unit: usize, path: &str, errs: &mut Vec<FieldError>) {
    let most = MAX_LIMIT / unit;
    if !(1..=most).contains(&value) {
        errs.push(FieldError::new(
            path,
            format!("must be from 1 to {most} (2 GiB, the largest protobuf message)"),
        ));
    }
}

pub enum BodyError {
    TooLarge,
    Read(String),
}

/// The whole body, if it is at most `limit` bytes.
pub async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            drain(body).await;
            return Err(BodyError::TooLarge);
        }
        chunks.push(data);
    }
    // One chunk, the usual case for small bodies, is handed on without a copy.
    if chunks.len() == 1 {
        return Ok(chunks.swap_remove(0));
    }
    let mut whole = BytesMut::with_capacity(total);
    for c in chunks {
        whole.extend_from_slice(&c);
    }
    Ok(whole.freeze())
}

async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}
