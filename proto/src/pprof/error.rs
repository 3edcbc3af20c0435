use thiserror::Error;

/// Why a pprof payload (or, for [`super::from_otlp`], an OTLP request) was refused. Always the
/// sender's fault: the message names what was wrong and where, for the error sent back.
#[derive(Debug, Error)]
pub enum PprofError {
    /// Starts with the gzip magic but does not inflate.
    #[error("invalid gzip stream: {0}")]
    Gzip(#[source] std::io::Error),
    /// A [`super::Limits`] bound was crossed; `what` is the field's name.
    #[error("{at}: over the limit {what} = {limit}")]
    Limit {
        what: &'static str,
        limit: usize,
        at: String,
    },
    /// Not protobuf wire format (truncated, bad varint, bad field key).
    #[error("malformed protobuf at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    /// Wire format is fine but a field does not fit `profile.proto` (e.g. bad UTF-8).
    #[error("invalid pprof protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("{at}: string index {index} is outside the string table ({len} entries)")]
    StringIndex { at: String, index: i64, len: usize },
    #[error("{at}: {what} id {id} is not defined")]
    UnknownId { what: &'static str, id: u64, at: String },
    #[error("{what} id {id} is defined more than once")]
    DuplicateId { what: &'static str, id: u64 },
    #[error("sample {sample}: {got} values but the profile has {want} sample types")]
    ValueCount { sample: usize, got: usize, want: usize },
    /// Anything else that breaks `profile.proto`'s rules.
    #[error("{at}: {reason}")]
    Invalid { at: String, reason: &'static str },
    /// An OTLP dictionary reference that points outside its table.
    #[error("{at}: index {index} is outside {table} ({len} entries)")]
    OtlpIndex {
        table: &'static str,
        index: i64,
        len: usize,
        at: String,
    },
}
