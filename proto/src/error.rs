use thiserror::Error;

/// Why a received payload could not be turned into a batch. Always the sender's fault.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Found by hotspan's own scan of bytes it keeps undecoded; the same rules as prost's.
    #[error("invalid protobuf: {0}")]
    Wire(String),
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
}
