use crate::{DecodeError, Encoding, LogsBatch, MetricsBatch, ProfilesBatch, Signal, TracesBatch};
use bytes::Bytes;

/// One signal's data as it moves between components. A consumer owns the batch it is given.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Traces(TracesBatch),
    Metrics(MetricsBatch),
    Logs(LogsBatch),
    Profiles(ProfilesBatch),
}

/// Items a receiver refused as invalid.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rejected {
    /// In the unit the signal's OTLP partial success counts (spans; profiles).
    pub reported: usize,
    /// In the unit hotspan counts the signal in (spans; samples).
    pub items: usize,
    pub reason: Option<String>,
}

impl Rejected {
    /// `n` items rejected, counted the same way by OTLP and by hotspan.
    fn counted((n, reason): (usize, Option<String>)) -> Self {
        Rejected {
            reported: n,
            items: n,
            reason,
        }
    }
}

impl Batch {
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Logs(_) => Signal::Logs,
            Batch::Profiles(_) => Signal::Profiles,
        }
    }

    /// Spans, metric data points, log records or samples: the units otelcol counts in.
    pub fn item_count(&self) -> usize {
        match self {
            Batch::Traces(t) => t.item_count(),
            Batch::Metrics(m) => m.item_count(),
            Batch::Logs(l) => l.item_count(),
            Batch::Profiles(p) => p.sample_count(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Batch::Traces(t) => t.encoded_len(),
            Batch::Metrics(m) => m.encoded_len(),
            Batch::Logs(l) => l.encoded_len(),
            Batch::Profiles(p) => p.encoded_len(),
        }
    }

    /// Decodes an OTLP export request body of the given signal.
    pub fn decode(signal: Signal, bytes: &[u8], encoding: Encoding) -> Result<Batch, DecodeError> {
        match signal {
            Signal::Traces => TracesBatch::decode(bytes, encoding).map(Batch::Traces),
            Signal::Metrics => MetricsBatch::decode(bytes, encoding).map(Batch::Metrics),
            Signal::Logs => LogsBatch::decode(bytes, encoding).map(Batch::Logs),
            Signal::Profiles => ProfilesBatch::decode(bytes, encoding).map(Batch::Profiles),
        }
    }

    /// Like [`Batch::decode`]; traces keep slices of `bytes` rather than copies.
    pub fn decode_bytes(signal: Signal, bytes: Bytes, encoding: Encoding) -> Result<Batch, DecodeError> {
        match signal {
            Signal::Traces => TracesBatch::decode_bytes(bytes, encoding).map(Batch::Traces),
            _ => Batch::decode(signal, &bytes, encoding),
        }
    }

    /// Encodes the batch as an OTLP export request body.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match self {
            Batch::Traces(t) => t.encode(encoding),
            Batch::Metrics(m) => m.encode(encoding),
            Batch::Logs(l) => l.encode(encoding),
            Batch::Profiles(p) => p.encode(encoding),
        }
    }

    /// Takes out items nothing downstream could use (spans, log records and data points with
    /// ids of the wrong length, profiles whose indices point outside their dictionary).
    pub fn remove_invalid(&mut self) -> Rejected {
        match self {
            Batch::Traces(t) => {
                let split = t.remove_invalid_spans();
                Rejected::counted((split.rejected, split.reason))
            }
            Batch::Profiles(p) => {
                let r = p.remove_invalid_profiles();
                Rejected {
                    reported: r.profiles,
                    items: r.samples,
                    reason: r.reason,
                }
            }
            Batch::Logs(l) => Rejected::counted(l.remove_invalid_records()),
            Batch::Metrics(m) => Rejected::counted(m.remove_invalid_points()),
        }
    }

    /// Moves `other`'s items into this batch, or gives `other` back when they cannot merge
    /// (different signals, or profiles, whose dictionaries would need re-indexing).
    pub fn append(&mut self, other: Batch) -> Option<Batch> {
        match (self, other) {
            (Batch::Traces(a), Batch::Traces(b)) => {
                a.append(b);
                None
            }
            (Batch::Metrics(a), Batch::Metrics(b)) => {
                a.append(b);
                None
            }
            (Batch::Logs(a), Batch::Logs(b)) => {
                a.append(b);
                None
            }
            (_, other) => Some(other),
        }
    }

    /// Splits off the first `max_items` items into a new batch. Profiles are not split.
    pub fn split_front(&mut self, max_items: usize) -> Batch {
        match self {
            Batch::Traces(t) => Batch::Traces(t.split_front(max_items)),
            Batch::Metrics(m) => Batch::Metrics(m.split_front(max_items)),
            Batch::Logs(l) => Batch::Logs(l.split_front(max_items)),
            Batch::Profiles(p) => Batch::Profiles(std::mem::take(p)),
        }
    }
}
