//! `google.rpc.Status`, the error body OTLP/HTTP returns with 4xx and 5xx responses.

use crate::Encoding;

/// The subset of `google.rpc.Status` hotspan sends: a gRPC code and a message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl Status {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
        }
    }

    /// Reads a status as an OTLP/HTTP server sends it, in `encoding`; `None` for a body that is
    /// not one.
    pub fn read(body: &[u8], encoding: Encoding) -> Option<Self> {
        match encoding {
            Encoding::Protobuf => prost::Message::decode(body).ok(),
            Encoding::Json => {
                let json: serde_json::Value = serde_json::from_slice(body).ok()?;
                Some(Status {
                    code: json.get("code")?.as_i64().and_then(|c| i32::try_from(c).ok())?,
                    message: json.get("message")?.as_str()?.to_string(),
                })
            }
        }
    }

    /// Encodes the status in the request's encoding, as the OTLP/HTTP spec asks.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => prost::Message::encode_to_vec(self),
            Encoding::Json => serde_json::json!({ "code": self.code, "message": self.message })
                .to_string()
                .into_bytes(),
        }
    }
}

/// `partial_success` of any OTLP export response. Every signal's response has the same wire
/// shape (count in field 1, message in field 2); only the JSON name of the count differs.
#[derive(Clone, PartialEq, prost::Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

/// The partial success an export response reports, in either encoding: (items rejected, the
/// server's message); `None` for full success or a body that is not a response.
pub fn read_partial_success(body: &[u8], encoding: Encoding) -> Option<(i64, String)> {
    let (rejected, message) = match encoding {
        Encoding::Protobuf => {
            let p = <ExportResponse as prost::Message>::decode(body)
                .ok()?
                .partial_success?;
            (p.rejected, p.error_message)
        }
        Encoding::Json => {
            let json: serde_json::Value = serde_json::from_slice(body).ok()?;
            let p = json
                .get("partialSuccess")
                .or_else(|| json.get("partial_success"))?;
            let p = p.as_object()?;
            // rejectedSpans, rejected_data_points...: an int64, so a string or a number.
            let rejected = p
                .iter()
                .find(|(k, _)| k.starts_with("rejected"))
                .and_then(|(_, v)| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                .unwrap_or(0);
            let message = p
                .get("errorMessage")
                .or_else(|| p.get("error_message"))
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            (rejected, message.to_string())
        }
    };
    (rejected > 0 || !message.is_empty()).then_some((rejected, message))
}

/// Encodes an `Export<Signal>ServiceResponse`; `rejected` 0 with no message is full success.
pub fn export_response(signal: crate::Signal, rejected: usize, message: &str, encoding: Encoding) -> Vec<u8> {
    use crate::Signal;
    let partial = (rejected > 0 || !message.is_empty()).then(|| PartialSuccess {
        rejected: rejected as i64,
        error_message: message.to_string(),
    });
    match encoding {
        Encoding::Protobuf => prost::Message::encode_to_vec(&ExportResponse {
            partial_success: partial,
        }),
        Encoding::Json => match partial {
            None => b"{}".to_vec(),
            Some(p) => {
                let count_name = match signal {
                    Signal::Traces => "rejectedSpans",
                    Signal::Metrics => "rejectedDataPoints",
                    Signal::Logs => "rejectedLogRecords",
                    Signal::Profiles => "rejectedProfiles",
                };
                // int64 is a decimal string in OTLP/JSON.
                serde_json::json!({ "partialSuccess": { count_name: p.rejected.to_string(), "errorMessage": p.error_message } })
                    .to_string()
                    .into_bytes()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_is_read_in_either_encoding() {
        for signal in crate::Signal::ALL {
            for encoding in [Encoding::Protobuf, Encoding::Json] {
                let body = export_response(signal, 3, "3 spans too old", encoding);
                assert_eq!(
                    read_partial_success(&body, encoding),
                    Some((3, "3 spans too old".to_string())),
                    "{signal} {encoding:?}"
                );
                let full = export_response(signal, 0, "", encoding);
                assert_eq!(read_partial_success(&full, encoding), None);
            }
        }
        let snake = br#"{"partial_success":{"rejected_log_records":7,"error_message":"x"}}"#;
        assert_eq!(read_partial_success(snake, Encoding::Json), Some((7, "x".into())));
        assert_eq!(read_partial_success(b"<html>", Encoding::Json), None);
    }

    #[test]
    fn a_status_reads_back_in_either_encoding_and_other_bodies_do_not() {
        let status = Status::new(3, "span 7 has no name");
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            assert_eq!(
                Status::read(&status.encode(encoding), encoding),
                Some(status.clone())
            );
        }
        assert_eq!(Status::read(b"<html>", Encoding::Json), None);
        assert_eq!(Status::read(b"{\"error\":\"x\"}", Encoding::Json), None);
        assert_eq!(Status::read(b"\xff\xff", Encoding::Protobuf), None);
    }
}
