use hotspan_config::Signal;

use crate::{DecodeError, Encoding, TracesBatch};

/// One signal's data as it moves between components. A consumer owns the batch it is given.
#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Traces(TracesBatch),
}

impl Batch {
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
        }
    }

    /// Spans, data points, log records or samples: the unit otelcol counts in.
    pub fn item_count(&self) -> usize {
        match self {
            Batch::Traces(t) => t.span_count(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Batch::Traces(t) => t.encoded_len(),
        }
    }

    /// Decodes an OTLP export request body of the given signal.
    pub fn decode(signal: Signal, bytes: &[u8], encoding: Encoding) -> Result<Batch, DecodeError> {
        match signal {
            Signal::Traces => TracesBatch::decode(bytes, encoding).map(Batch::Traces),
            other => Err(DecodeError::Unsupported(other)),
        }
    }

    /// Encodes the batch as an OTLP export request body.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match self {
            Batch::Traces(t) => t.encode(encoding),
        }
    }

    /// Moves `other`'s items into this batch; gives `other` back if the signals differ.
    pub fn append(&mut self, other: Batch) -> Result<(), Batch> {
        match (self, other) {
            (Batch::Traces(a), Batch::Traces(b)) => {
                a.append(b);
                Ok(())
            }
        }
    }

    /// Takes out items nothing downstream could use (e.g. spans with invalid ids): how many,
    /// and why, for the OTLP partial-success answer.
    pub fn remove_invalid(&mut self) -> (usize, Option<String>) {
        match self {
            Batch::Traces(t) => {
                let split = t.remove_invalid_spans();
                (split.rejected, split.reason)
            }
        }
    }

    /// Splits off the first `max_items` items into a new batch.
    pub fn split_front(&mut self, max_items: usize) -> Batch {
        match self {
            Batch::Traces(t) => Batch::Traces(t.split_front(max_items)),
        }
    }
}
