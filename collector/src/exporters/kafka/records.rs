//! A batch as Kafka messages: cut by trace (keyed, as otelcol does) or by partition, encoded,
//! and cut again until each message fits `max_message_bytes`.

use hotspan_proto::otlp::profiles::v1development::ProfilesDictionary;
use hotspan_proto::{Batch, Encoding, ProfilesBatch};

use crate::exporters::split::{sample_trace_id, split_profiles_by, split_traces_by_id};
use crate::kafka::sarama_partition;

/// One message to produce.
#[derive(Debug)]
pub struct Record {
    /// The trace id in lower-case hex, when messages are keyed by trace.
    pub key: Option<Vec<u8>>,
    /// Set when the exporter chose the partition itself.
    pub partition: Option<i32>,
    pub payload: Vec<u8>,
    pub items: usize,
}

/// How to cut and encode.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub encoding: Encoding,
    pub max_bytes: usize,
    /// Traces: one message per trace, keyed by its id.
    pub traces_by_id: bool,
    /// Profiles: samples grouped by the partition their trace id hashes to, among this many.
    pub profile_partitions: Option<i32>,
}

/// The messages for `batch`, and the items left out because even alone they were larger than
/// `max_bytes` (with the size of the smallest such item).
pub fn records(batch: &Batch, plan: &Plan) -> (Vec<Record>, Option<(usize, usize)>) {
    let parts: Vec<(Option<Vec<u8>>, Option<i32>, Batch)> = match (batch, plan.profile_partitions) {
        (Batch::Traces(t), _) if plan.traces_by_id => split_traces_by_id(t)
            .into_iter()
            .map(|(trace, part)| {
                let key = trace.map(|id| format!("{id:032x}").into_bytes());
                (key, None, Batch::Traces(part))
            })
            .collect(),
        (Batch::Profiles(p), Some(n)) => by_partition(p, n)
            .into_iter()
            .map(|(partition, part)| (None, partition, Batch::Profiles(part)))
            .collect(),
        _ => vec![(None, None, batch.clone())],
    };
    let mut out = Vec::new();
    let mut oversize: Option<(usize, usize)> = None;
    for (key, partition, part) in parts {
        fit(part, plan, &mut |payload, items| {
            out.push(Record {
                key: key.clone(),
                partition,
                payload,
                items,
            })
        })
        .into_iter()
        .for_each(|(items, bytes)| {
            let (n, smallest) = oversize.get_or_insert((0, usize::MAX));
            *n += items;
            *smallest = (*smallest).min(bytes);
        });
    }
    (out, oversize)
}

/// Samples by the partition their trace hashes to (its id in hex, the key spans are sent
/// with); samples of no trace, and profiles without samples, under `None`.
fn by_partition(batch: &ProfilesBatch, partitions: i32) -> Vec<(Option<i32>, ProfilesBatch)> {
    let empty = ProfilesDictionary::default();
    let dict = batch.dictionary().unwrap_or(&empty);
    split_profiles_by(batch, |_, sample| {
        let trace = sample.and_then(|s| sample_trace_id(s, dict))?;
        let key = format!("{:032x}", u128::from_be_bytes(trace));
        Some(sarama_partition(key.as_bytes(), partitions))
    })
    .into_iter()
    .collect()
}

/// Encodes `batch`, halving it until each piece fits; pieces go to `emit` (payload, items).
/// Returns the single items that did not fit alone (count, encoded size).
fn fit(batch: Batch, plan: &Plan, emit: &mut dyn FnMut(Vec<u8>, usize)) -> Option<(usize, usize)> {
    let items = batch.item_count();
    // The protobuf size is known without encoding; JSON's only by encoding.
    if plan.encoding == Encoding::Protobuf && batch.encoded_len() > plan.max_bytes && items > 1 {
        return halves(batch, plan, emit);
    }
    let payload = batch.encode(plan.encoding);
    if payload.len() <= plan.max_bytes {
        emit(payload, items);
        return None;
    }
    if items == 1 {
        return Some((1, payload.len()));
    }
    halves(batch, plan, emit)
}

fn halves(batch: Batch, plan: &Plan, emit: &mut dyn FnMut(Vec<u8>, usize)) -> Option<(usize, usize)> {
    let items = batch.item_count();
    let (front, back) = match batch {
        Batch::Profiles(p) => {
            // Samples in walk order, first half and second half.
            let mut seen = 0usize;
            let mut parts = split_profiles_by(&p, |_, _| {
                seen += 1;
                seen > items / 2
            });
            let back = parts.remove(&true);
            let front = parts.remove(&false);
            match (front, back) {
                (Some(f), Some(b)) => (Batch::Profiles(f), Batch::Profiles(b)),
                // One profile without samples, or all in one half: nothing left to cut.
                (Some(only), None) | (None, Some(only)) => {
                    let payload = Batch::Profiles(only).encode(plan.encoding);
                    return Some((items, payload.len()));
                }
                (None, None) => return None,
            }
        }
        mut other => {
            let front = other.split_front(items / 2);
            (front, other)
        }
    };
    let a = fit(front, plan, emit);
    let b = fit(back, plan, emit);
    match (a, b) {
        (Some((n1, s1)), Some((n2, s2))) => Some((n1 + n2, s1.min(s2))),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotspan_processors::spanprofile::fixtures::{profiles, span_in, traces, Plant};
    use hotspan_proto::TracesBatch;

    fn three_traces() -> TracesBatch {
        let mut spans = Vec::new();
        for t in 1..=3u128 {
            for s in 0..4u64 {
                spans.push(span_in(t << 64 | 7, t as u64 * 100 + s + 1, None, s, s + 1));
            }
        }
        traces("shop", spans)
    }

    #[test]
    fn traces_by_id_are_one_keyed_message_per_trace() {
        let plan = Plan {
            encoding: Encoding::Protobuf,
            max_bytes: 1 << 20,
            traces_by_id: true,
            profile_partitions: None,
        };
        let (recs, oversize) = records(&Batch::Traces(three_traces()), &plan);
        assert!(oversize.is_none());
        assert_eq!(recs.len(), 3);
        for (r, t) in recs.iter().zip(1..=3u128) {
            assert_eq!(r.key.as_deref(), Some(format!("{:032x}", t << 64 | 7).as_bytes()));
            assert_eq!(r.items, 4);
            let back = TracesBatch::decode(&r.payload, Encoding::Protobuf).expect("decodes");
            let ids: Vec<u128> = back
                .resource_spans()
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| u128::from_be_bytes(s.trace_id.clone().try_into().expect("16 bytes")))
                .collect();
            assert_eq!(ids, vec![t << 64 | 7; 4]);
        }
    }

    #[test]
    fn messages_are_cut_to_fit_and_what_cannot_fit_is_counted() {
        let batch = Batch::Traces(three_traces());
        let whole = batch.encode(Encoding::Json).len();
        let plan = Plan {
            encoding: Encoding::Json,
            max_bytes: whole / 3,
            traces_by_id: false,
            profile_partitions: None,
        };
        let (recs, oversize) = records(&batch, &plan);
        assert!(oversize.is_none());
        assert!(recs.len() >= 3);
        assert!(recs
            .iter()
            .all(|r| r.payload.len() <= whole / 3 && r.key.is_none()));
        assert_eq!(recs.iter().map(|r| r.items).sum::<usize>(), 12);
        let tiny = Plan {
            max_bytes: 10,
            ..plan
        };
        let (recs, oversize) = records(&batch, &tiny);
        assert!(recs.is_empty());
        assert_eq!(oversize.map(|o| o.0), Some(12));
    }

    #[test]
    fn samples_go_to_the_partition_their_traces_spans_are_keyed_to() {
        let plants: Vec<Plant> = (1..=40u128)
            .map(|t| Plant {
                stack: vec!["main.work"],
                count: 1,
                span: Some(t as u64),
                trace: Some(t << 64 | 9),
                as_labels: t % 2 == 0,
                ..Default::default()
            })
            .collect();
        let batch = Batch::Profiles(profiles("shop", &plants, false));
        let plan = Plan {
            encoding: Encoding::Protobuf,
            max_bytes: 1 << 20,
            traces_by_id: false,
            profile_partitions: Some(4),
        };
        let (recs, _) = records(&batch, &plan);
        assert!(recs.len() > 1 && recs.len() <= 4, "{} messages", recs.len());
        let mut total = 0;
        for r in &recs {
            let p = ProfilesBatch::decode(&r.payload, Encoding::Protobuf).expect("decodes");
            let dict = p.dictionary().cloned().unwrap_or_default();
            for s in p
                .resource_profiles()
                .iter()
                .flat_map(|rp| &rp.scope_profiles)
                .flat_map(|sp| &sp.profiles)
                .flat_map(|pr| &pr.samples)
            {
                let trace = sample_trace_id(s, &dict).expect("a trace");
                let key = format!("{:032x}", u128::from_be_bytes(trace));
                assert_eq!(r.partition, Some(sarama_partition(key.as_bytes(), 4)));
                total += 1;
            }
        }
        // Two profiles (count and cpu) of 40 samples each.
        assert_eq!(total, 80);
    }
}
