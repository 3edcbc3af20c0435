use std::collections::HashMap;
use std::io::Write;

use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;

use super::links::{parse_span_id, parse_trace_id, to_hex};
use super::*;
use crate::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use crate::otlp::common::v1::any_value::Value;
use crate::otlp::common::v1::{AnyValue, KeyValue};
use crate::otlp::profiles::v1development as otlp;

// ---------------------------------------------------------------------------------------------
// Building pprof input by hand

/// Writes pprof profiles the way producers do: strings interned, ids 1..n unless told.
struct Pprof {
    p: pb::Profile,
    strings: HashMap<String, i64>,
}

impl Pprof {
    fn new() -> Self {
        let mut b = Pprof {
            p: pb::Profile::default(),
            strings: HashMap::new(),
        };
        b.s("");
        b
    }

    fn s(&mut self, v: &str) -> i64 {
        if let Some(&i) = self.strings.get(v) {
            return i;
        }
        let i = self.p.string_table.len() as i64;
        self.p.string_table.push(v.to_owned());
        self.strings.insert(v.to_owned(), i);
        i
    }

    fn sample_type(&mut self, ty: &str, unit: &str) -> &mut Self {
        let vt = pb::ValueType {
            r#type: self.s(ty),
            unit: self.s(unit),
        };
        self.p.sample_type.push(vt);
        self
    }

    fn function(&mut self, id: u64, name: &str, file: &str) -> &mut Self {
        let f = pb::Function {
            id,
            name: self.s(name),
            filename: self.s(file),
            ..Default::default()
        };
        self.p.function.push(f);
        self
    }

    fn location(&mut self, id: u64, function_id: u64, line: i64) -> &mut Self {
        let line = vec![pb::Line {
            function_id,
            line,
            column: 0,
        }];
        self.p.location.push(pb::Location {
            id,
            line,
            ..Default::default()
        });
        self
    }

    fn sample(&mut self, stack: &[u64], values: &[i64], labels: &[(&str, &str)]) -> &mut Self {
        let label = labels
            .iter()
            .map(|(k, v)| pb::Label {
                key: self.s(k),
                str: self.s(v),
                ..Default::default()
            })
            .collect();
        self.p.sample.push(pb::Sample {
            location_id: stack.to_vec(),
            value: values.to_vec(),
            label,
        });
        self
    }

    fn bytes(&self) -> Vec<u8> {
        self.p.encode_to_vec()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip in memory");
    enc.finish().expect("gzip in memory")
}

/// A small Go-like CPU profile: work (line 10) called from main (line 20).
fn cpu() -> Pprof {
    let mut b = Pprof::new();
    b.sample_type("samples", "count")
        .sample_type("cpu", "nanoseconds");
    b.function(1, "main.work", "main.go")
        .function(2, "main.main", "main.go");
    b.location(1, 1, 10).location(2, 2, 20);
    b.p.time_nanos = 1_700_000_000_000_000_000;
    b.p.duration_nanos = 10_000_000_000;
    b.p.period = 10_000_000;
    b.p.period_type = Some(pb::ValueType {
        r#type: b.s("cpu"),
        unit: b.s("nanoseconds"),
    });
    b.sample(&[1, 2], &[1, 10_000_000], &[]);
    b.sample(&[2], &[2, 20_000_000], &[("domain", "payment")]);
    b
}

fn convert(bytes: &[u8]) -> Result<ExportProfilesServiceRequest, PprofError> {
    to_otlp(bytes, &ConvertOptions::default())
}

fn dict(req: &ExportProfilesServiceRequest) -> &otlp::ProfilesDictionary {
    req.dictionary.as_ref().expect("dictionary")
}

fn profiles(req: &ExportProfilesServiceRequest) -> &[otlp::Profile] {
    &req.resource_profiles[0].scope_profiles[0].profiles
}

fn string(req: &ExportProfilesServiceRequest, i: i32) -> &str {
    &dict(req).string_table[i as usize]
}

/// The sample's attributes as (key, value) text, ints rendered with their unit.
fn attrs(req: &ExportProfilesServiceRequest, s: &otlp::Sample) -> Vec<(String, String)> {
    s.attribute_indices
        .iter()
        .map(|&i| {
            let a = &dict(req).attribute_table[i as usize];
            let value = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(n)) => format!("{n} {}", string(req, a.unit_strindex)),
                other => format!("{other:?}"),
            };
            (string(req, a.key_strindex).to_owned(), value)
        })
        .collect()
}

fn link(req: &ExportProfilesServiceRequest, s: &otlp::Sample) -> (String, String) {
    let l = &dict(req).link_table[s.link_index as usize];
    (to_hex(&l.trace_id), to_hex(&l.span_id))
}

/// The first sample of the first profile of `b` with one extra label set.
fn labelled(labels: &[(&str, &str)]) -> ExportProfilesServiceRequest {
    let mut b = Pprof::new();
    b.sample_type("samples", "count")
        .function(1, "f", "f.go")
        .location(1, 1, 1);
    b.sample(&[1], &[1], labels);
    convert(&b.bytes()).expect("converts")
}

// ---------------------------------------------------------------------------------------------
// Conversion

#[test]
fn raw_and_gzip_convert_alike() {
    let raw = cpu().bytes();
    let from_raw = convert(&raw).expect("raw converts");
    let from_gzip = convert(&gzip(&raw)).expect("gzip converts");
    assert_eq!(from_raw, from_gzip);

    let ps = profiles(&from_raw);
    assert_eq!(ps.len(), 2);
    let types: Vec<_> = ps
        .iter()
        .map(|p| {
            let vt = p.sample_type.expect("sample type");
            (
                string(&from_raw, vt.type_strindex),
                string(&from_raw, vt.unit_strindex),
            )
        })
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    for (p, want) in ps.iter().zip([[1, 2], [10_000_000, 20_000_000]]) {
        let values: Vec<i64> = p.samples.iter().flat_map(|s| s.values.clone()).collect();
        assert_eq!(values, want);
        assert_eq!(p.time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(p.duration_nano, 10_000_000_000);
        assert_eq!(p.period, 10_000_000);
        let period = p.period_type.expect("period type");
        assert_eq!(string(&from_raw, period.type_strindex), "cpu");
        assert!(p.original_payload.is_empty());
    }
    assert_eq!(
        attrs(&from_raw, &ps[0].samples[1]),
        [("domain".to_owned(), "payment".to_owned())]
    );
}

#[test]
fn stacks_stay_leaf_first() {
    let req = convert(&cpu().bytes()).expect("converts");
    let d = dict(&req);
    let stack = &d.stack_table[profiles(&req)[0].samples[0].stack_index as usize];
    let names: Vec<&str> = stack
        .location_indices
        .iter()
        .map(|&l| {
            let line = &d.location_table[l as usize].lines[0];
            string(&req, d.function_table[line.function_index as usize].name_strindex)
        })
        .collect();
    assert_eq!(names, ["main.work", "main.main"]);
}

#[test]
fn every_table_starts_with_its_zero_value() {
    let mut b = cpu();
    b.sample(&[1, 2], &[1, 1], &[("span_id", "00f067aa0ba902b7")]);
    let req = convert(&b.bytes()).expect("converts");
    let d = dict(&req);
    assert_eq!(d.string_table[0], "");
    assert_eq!(d.mapping_table[0], otlp::Mapping::default());
    assert_eq!(d.location_table[0], otlp::Location::default());
    assert_eq!(d.function_table[0], otlp::Function::default());
    assert_eq!(d.link_table[0], otlp::Link::default());
    assert_eq!(d.attribute_table[0], otlp::KeyValueAndUnit::default());
    assert_eq!(d.stack_table[0], otlp::Stack::default());
    // A sample with no labels points at the "none" entries.
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(s.link_index, 0);
    assert!(s.attribute_indices.is_empty());
}

#[test]
fn identical_stacks_share_entries() {
    let mut b = Pprof::new();
    b.sample_type("samples", "count");
    b.function(1, "f", "f.go").function(2, "f", "f.go"); // same function under two ids
    b.location(1, 1, 7).location(2, 2, 7).location(3, 1, 8);
    b.sample(&[1, 3], &[1], &[])
        .sample(&[2, 3], &[1], &[])
        .sample(&[1, 3], &[1], &[]);
    // A duplicate string table entry must not create a second dictionary string.
    b.p.string_table.push("f".into());
    b.p.function[1].name = (b.p.string_table.len() - 1) as i64;
    let req = convert(&b.bytes()).expect("converts");
    let d = dict(&req);
    let stacks: Vec<i32> = profiles(&req)[0].samples.iter().map(|s| s.stack_index).collect();
    assert_eq!(stacks, [1, 1, 1]);
    assert_eq!(d.stack_table.len(), 2);
    assert_eq!(d.location_table.len(), 3, "zero + two distinct locations");
    assert_eq!(d.function_table.len(), 2, "zero + one function");
    let mut strings = d.string_table.clone();
    strings.sort();
    strings.dedup();
    assert_eq!(strings.len(), d.string_table.len(), "no duplicate strings");
}

#[test]
fn empty_stack_uses_stack_zero() {
    let mut b = Pprof::new();
    b.sample_type("samples", "count").sample(&[], &[3], &[]);
    let req = convert(&b.bytes()).expect("converts");
    assert_eq!(profiles(&req)[0].samples[0].stack_index, 0);
    assert_eq!(dict(&req).stack_table.len(), 1);
}

#[test]
fn empty_payload_is_an_empty_profile() {
    let req = convert(&[]).expect("the empty message is a valid profile");
    assert!(profiles(&req).is_empty());
    assert_eq!(dict(&req).string_table, [""]);
}

#[test]
fn numeric_labels_keep_their_unit() {
    let mut b = Pprof::new();
    b.sample_type("alloc", "bytes")
        .function(1, "f", "f.go")
        .location(1, 1, 1);
    let (key, unit) = (b.s("bytes"), b.s("bytes"));
    let (count, empty) = (b.s("count"), 0);
    b.p.sample.push(pb::Sample {
        location_id: vec![1],
        value: vec![512],
        label: vec![
            pb::Label {
                key,
                num: 512,
                num_unit: unit,
                ..Default::default()
            },
            pb::Label {
                key: count,
                num: 3,
                num_unit: empty,
                ..Default::default()
            },
        ],
    });
    let req = convert(&b.bytes()).expect("converts");
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(
        attrs(&req, s),
        [
            ("bytes".into(), "512 bytes".into()),
            ("count".into(), "3 ".into())
        ]
    );
    let a = &dict(&req).attribute_table[s.attribute_indices[1] as usize];
    assert_eq!(a.unit_strindex, 0, "no unit means index 0");
}

#[test]
fn mapping_build_id_and_folded_location_become_attributes() {
    let mut b = cpu();
    let (file, build) = (b.s("/bin/app"), b.s("abc123"));
    b.p.mapping.push(pb::Mapping {
        id: 1,
        memory_start: 0x1000,
        memory_limit: 0x9000,
        file_offset: 0x40,
        filename: file,
        build_id: build,
        has_functions: true,
        ..Default::default()
    });
    b.p.location[0].mapping_id = 1;
    b.p.location[0].address = 0x1234;
    b.p.location[0].is_folded = true;
    let req = convert(&b.bytes()).expect("converts");
    let d = dict(&req);
    let m = &d.mapping_table[1];
    assert_eq!(
        (m.memory_start, m.memory_limit, m.file_offset),
        (0x1000, 0x9000, 0x40)
    );
    assert_eq!(string(&req, m.filename_strindex), "/bin/app");
    let a = &d.attribute_table[m.attribute_indices[0] as usize];
    assert_eq!(string(&req, a.key_strindex), BUILD_ID_KEY);
    assert_eq!(
        a.value,
        Some(AnyValue {
            value: Some(Value::StringValue("abc123".into()))
        })
    );
    let leaf = &d.location_table[d.stack_table[1].location_indices[0] as usize];
    assert_eq!((leaf.mapping_index, leaf.address), (1, 0x1234));
    let a = &d.attribute_table[leaf.attribute_indices[0] as usize];
    assert_eq!(string(&req, a.key_strindex), IS_FOLDED_KEY);
    assert_eq!(
        a.value,
        Some(AnyValue {
            value: Some(Value::BoolValue(true))
        })
    );

    let back = from_otlp(&req).expect("converts back");
    let loc = back
        .location
        .iter()
        .find(|l| l.mapping_id != 0)
        .expect("mapped location");
    assert!(loc.is_folded);
    let m = &back.mapping[0];
    assert_eq!(back.string_table[m.build_id as usize], "abc123");
    assert_eq!(back.string_table[m.filename as usize], "/bin/app");
}

#[test]
fn options_fill_resource_scope_and_first_payload_only() {
    let payload = gzip(&cpu().bytes());
    let opts = ConvertOptions {
        resource_attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("checkout".into())),
            }),
            ..Default::default()
        }],
        scope_name: "test-scope".into(),
        include_original_payload: true,
        ..Default::default()
    };
    let req = to_otlp(&payload, &opts).expect("converts");
    let rp = &req.resource_profiles[0];
    assert_eq!(
        rp.resource.as_ref().expect("resource").attributes,
        opts.resource_attributes
    );
    assert_eq!(
        rp.scope_profiles[0].scope.as_ref().expect("scope").name,
        "test-scope"
    );
    let ps = profiles(&req);
    assert_eq!(
        ps[0].original_payload, payload,
        "bytes as received, still gzipped"
    );
    assert_eq!(ps[0].original_payload_format, "pprof");
    assert!(ps[1].original_payload.is_empty() && ps[1].original_payload_format.is_empty());
}

/// A goroutine profile as Go writes it: `goroutine/count`, one sample per distinct stack.
fn goroutines(time_nanos: i64) -> Pprof {
    let mut b = Pprof::new();
    b.sample_type("goroutine", "count");
    b.function(1, "main.idle", "main.go")
        .function(2, "main.main", "main.go");
    b.location(1, 1, 10).location(2, 2, 20);
    b.p.time_nanos = time_nanos;
    b.sample(&[1, 2], &[1000], &[]);
    b.sample(&[2], &[3], &[("span_id", "00000000000000a1")]);
    b
}

#[test]
fn snapshots_stamp_every_sample_with_their_instant() {
    let snapshot = |fallback| ConvertOptions {
        snapshot: Some(Snapshot {
            period_nano: 250_000_000,
            fallback_time_unix_nano: fallback,
        }),
        ..Default::default()
    };
    let at = 1_700_000_000_123_456_789;
    let req = to_otlp(&goroutines(at).bytes(), &snapshot(42)).expect("converts");
    let p = &profiles(&req)[0];
    assert_eq!((p.time_unix_nano, p.duration_nano), (at as u64, 250_000_000));
    let counts: Vec<i64> = p.samples.iter().map(|s| s.values[0]).collect();
    assert_eq!(counts, [1000, 3]);
    for s in &p.samples {
        assert_eq!(s.timestamps_unix_nano, [at as u64]);
        assert_eq!(s.values.len(), s.timestamps_unix_nano.len());
    }
    assert_eq!(link(&req, &p.samples[1]).1, "00000000000000a1");
    // No time in the payload: the fallback instant.
    let req = to_otlp(&goroutines(0).bytes(), &snapshot(42)).expect("converts");
    let p = &profiles(&req)[0];
    assert_eq!(p.time_unix_nano, 42);
    assert!(p.samples.iter().all(|s| s.timestamps_unix_nano == [42]));
    // Not a snapshot: no timestamps, the payload's own window.
    let req = convert(&goroutines(at).bytes()).expect("converts");
    let p = &profiles(&req)[0];
    assert_eq!((p.time_unix_nano, p.duration_nano), (at as u64, 0));
    assert!(p.samples.iter().all(|s| s.timestamps_unix_nano.is_empty()));
}

// ---------------------------------------------------------------------------------------------
// Links

#[test]
fn span_ids_parse_as_hex_or_decimal() {
    let id = 0x00f0_67aa_0ba9_02b7u64.to_be_bytes();
    assert_eq!(parse_span_id("00f067aa0ba902b7"), Some(id));
    assert_eq!(parse_span_id("00F067AA0BA902B7"), Some(id), "upper-case hex");
    assert_eq!(
        parse_span_id(&u64::from_be_bytes(id).to_string()),
        Some(id),
        "decimal (Datadog)"
    );
    assert_eq!(parse_span_id("18446744073709551615"), Some([0xff; 8]));
    // Exactly 16 characters is always hex, even when every digit is decimal.
    assert_eq!(
        parse_span_id("1234567890123456"),
        Some(0x1234_5678_9012_3456u64.to_be_bytes())
    );
    for bad in [
        "",
        "0",
        "0000000000000000",
        "00f067aa0ba902b",
        "00f067aa0ba902bz",
        "+5",
        "-1",
        "0x12",
        "18446744073709551616",
        "garbage",
    ] {
        assert_eq!(parse_span_id(bad), None, "{bad:?}");
    }
}

#[test]
fn trace_ids_parse_as_hex_or_decimal() {
    let hex = "4bf92f3577b34da6a3ce929d0e0e4736";
    let id = parse_trace_id(hex).expect("hex");
    assert_eq!(to_hex(&id), hex);
    assert_eq!(parse_trace_id(&hex.to_uppercase()), Some(id));
    let mut low = [0u8; 16];
    low[8..].copy_from_slice(&42u64.to_be_bytes());
    assert_eq!(parse_trace_id("42"), Some(low), "decimal fills the low 8 bytes");
    for bad in [
        "",
        "0",
        "4bf92f3577b34da6",
        "4bf92f3577b34da6a3ce929d0e0e473g",
        "00000000000000000000000000000000",
        "x",
    ] {
        assert_eq!(parse_trace_id(bad), None, "{bad:?}");
    }
}

#[test]
fn id_labels_become_links_and_leave_the_attributes() {
    let req = labelled(&[
        ("trace_id", "4BF92F3577B34DA6A3CE929D0E0E4736"),
        ("domain", "payment"),
        ("span_id", "00f067aa0ba902b7"),
    ]);
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(
        link(&req, s),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            "00f067aa0ba902b7".into()
        )
    );
    assert_eq!(attrs(&req, s), [("domain".into(), "payment".into())]);
}

#[test]
fn datadog_decimal_span_id() {
    let req = labelled(&[("span id", "67667974448284343"), ("local root span id", "1")]);
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(
        link(&req, s),
        (String::new(), format!("{:016x}", 67667974448284343u64))
    );
    assert_eq!(
        attrs(&req, s),
        [("local root span id".into(), "1".into())],
        "not a configured key"
    );
}

#[test]
fn trace_only_and_span_only_links() {
    let req = labelled(&[("trace id", "12345")]);
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(link(&req, s), (format!("{:032x}", 12345), String::new()));
    assert!(s.attribute_indices.is_empty());

    let req = labelled(&[("profile_id", "00f067aa0ba902b7")]);
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(link(&req, s), (String::new(), "00f067aa0ba902b7".into()));
}

#[test]
fn unparseable_ids_stay_attributes() {
    let req = labelled(&[("span_id", "not-an-id"), ("trace_id", "0")]);
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(s.link_index, 0);
    assert_eq!(
        attrs(&req, s),
        [
            ("span_id".into(), "not-an-id".into()),
            ("trace_id".into(), "0".into())
        ]
    );
}

#[test]
fn first_listed_key_wins_and_a_different_id_is_kept() {
    // `span_id` is listed before `profile_id`, whatever the label order.
    let req = labelled(&[
        ("profile_id", "0000000000000002"),
        ("span_id", "0000000000000001"),
    ]);
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(link(&req, s).1, "0000000000000001");
    assert_eq!(attrs(&req, s), [("profile_id".into(), "0000000000000002".into())]);

    // The same id under two keys is one fact; neither label stays.
    let req = labelled(&[("profile_id", "0000000000000001"), ("span_id", "1")]);
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(link(&req, s).1, "0000000000000001");
    assert!(s.attribute_indices.is_empty());
}

#[test]
fn configured_label_keys() {
    let mut b = Pprof::new();
    b.sample_type("samples", "count").sample(
        &[],
        &[1],
        &[("sid", "00f067aa0ba902b7"), ("span_id", "0000000000000001")],
    );
    let opts = ConvertOptions {
        span_id_labels: vec!["sid".into()],
        ..Default::default()
    };
    let req = to_otlp(&b.bytes(), &opts).expect("converts");
    let s = &profiles(&req)[0].samples[0];
    assert_eq!(link(&req, s).1, "00f067aa0ba902b7");
    assert_eq!(attrs(&req, s), [("span_id".into(), "0000000000000001".into())]);
}

#[test]
fn links_are_deduplicated() {
    // 67667974448284343 is 0x00f067aa0ba902b7: one span id in three spellings.
    let mut b = Pprof::new();
    b.sample_type("samples", "count");
    b.sample(&[], &[1], &[("span_id", "00f067aa0ba902b7")]).sample(
        &[],
        &[1],
        &[("span id", "67667974448284343")],
    );
    b.sample(&[], &[1], &[("span_id", "00F067AA0BA902B7")])
        .sample(&[], &[1], &[("span_id", "5")]);
    let req = convert(&b.bytes()).expect("converts");
    let links: Vec<i32> = profiles(&req)[0].samples.iter().map(|s| s.link_index).collect();
    assert_eq!(links, [1, 1, 1, 2]);
    assert_eq!(dict(&req).link_table.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Bad input

fn limits(f: impl FnOnce(&mut Limits)) -> ConvertOptions {
    let mut opts = ConvertOptions::default();
    f(&mut opts.limits);
    opts
}

fn limit_hit(result: Result<ExportProfilesServiceRequest, PprofError>) -> &'static str {
    match result {
        Err(PprofError::Limit { what, .. }) => what,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn truncated_protobuf_is_malformed() {
    let bytes = cpu().bytes();
    // Cut inside the first sample_type submessage.
    let err = convert(&bytes[..3]).expect_err("truncated");
    assert!(matches!(err, PprofError::Malformed { .. }), "{err:?}");
    // No cut anywhere may panic; most are errors, a few land on field boundaries.
    for cut in 0..bytes.len() {
        let _ = convert(&bytes[..cut]);
        let _ = convert(&gzip(&bytes[..cut]));
    }
}

#[test]
fn gzip_magic_without_gzip() {
    let err = convert(&[0x1f, 0x8b, 0x00, 0x01, 0x02, 0x03, 0x04]).expect_err("not gzip");
    assert!(matches!(err, PprofError::Gzip(_)), "{err:?}");
    let good = gzip(&cpu().bytes());
    let err = convert(&good[..good.len() - 9]).expect_err("truncated gzip");
    assert!(matches!(err, PprofError::Gzip(_)), "{err:?}");
}

#[test]
fn gzip_bomb_stops_at_the_limit() {
    let bomb = gzip(&vec![0u8; 4 << 20]);
    assert!(bomb.len() < 64 << 10, "compresses well");
    let opts = limits(|l| l.max_decompressed_bytes = 1 << 20);
    assert_eq!(limit_hit(to_otlp(&bomb, &opts)), "max_decompressed_bytes");
    // Raw input is held to the same bound.
    assert_eq!(
        limit_hit(to_otlp(&vec![0u8; (1 << 20) + 1], &opts)),
        "max_decompressed_bytes"
    );
    // Exactly at the limit is allowed.
    let bytes = cpu().bytes();
    let opts = limits(|l| l.max_decompressed_bytes = bytes.len());
    to_otlp(&gzip(&bytes), &opts).expect("at the limit");
}

#[test]
fn string_table_limits() {
    let mut b = cpu();
    for i in 0..20 {
        b.s(&format!("padding {i}"));
    }
    let bytes = b.bytes();
    assert_eq!(
        limit_hit(to_otlp(&bytes, &limits(|l| l.max_strings = 10))),
        "max_strings"
    );
    assert_eq!(
        limit_hit(to_otlp(&bytes, &limits(|l| l.max_string_bytes = 100))),
        "max_string_bytes"
    );
}

#[test]
fn count_limits() {
    let bytes = cpu().bytes();
    type SetLimit = fn(&mut Limits);
    let cases: [(SetLimit, &str); 5] = [
        (|l| l.max_samples = 1, "max_samples"),
        (|l| l.max_locations = 1, "max_locations"),
        (|l| l.max_functions = 1, "max_functions"),
        (|l| l.max_stack_depth = 1, "max_stack_depth"),
        (|l| l.max_labels_per_sample = 0, "max_labels_per_sample"),
    ];
    for (set, what) in cases {
        assert_eq!(limit_hit(to_otlp(&bytes, &limits(set))), what);
    }
    // Two samples in two sample types make four OTLP samples.
    assert_eq!(
        limit_hit(to_otlp(&bytes, &limits(|l| l.max_samples = 3))),
        "max_samples"
    );
}

#[test]
fn over_deep_stack_in_either_encoding() {
    let mut b = cpu();
    b.sample(&[1, 2, 1, 2, 1], &[1, 1], &[]);
    let opts = limits(|l| l.max_stack_depth = 4);
    assert_eq!(limit_hit(to_otlp(&b.bytes(), &opts)), "max_stack_depth");
    // Unpacked location ids: Sample { location_id: 1 (x5) } as separate varint fields.
    let mut sample = Vec::new();
    for _ in 0..5 {
        sample.extend_from_slice(&[0x08, 0x01]);
    }
    let mut bytes = vec![0x12, sample.len() as u8];
    bytes.extend_from_slice(&sample);
    assert_eq!(limit_hit(to_otlp(&bytes, &opts)), "max_stack_depth");
}

#[test]
fn out_of_range_string_index() {
    let mut b = cpu();
    b.p.function[0].name = 99;
    let err = convert(&b.bytes()).expect_err("bad index");
    assert!(
        matches!(err, PprofError::StringIndex { index: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("function id 1 name"), "{err}");

    let mut b = cpu();
    b.p.sample[1].label[0].str = -1;
    let err = convert(&b.bytes()).expect_err("negative index");
    assert!(
        matches!(err, PprofError::StringIndex { index: -1, .. }),
        "{err:?}"
    );
}

#[test]
fn unknown_ids() {
    let mut b = cpu();
    b.p.sample[0].location_id.push(7);
    let err = convert(&b.bytes()).expect_err("unknown location");
    assert!(
        matches!(
            err,
            PprofError::UnknownId {
                what: "location",
                id: 7,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "sample 0: location id 7 is not defined");

    let mut b = cpu();
    b.p.location[1].line[0].function_id = 9;
    let err = convert(&b.bytes()).expect_err("unknown function");
    assert!(
        matches!(
            err,
            PprofError::UnknownId {
                what: "function",
                id: 9,
                ..
            }
        ),
        "{err:?}"
    );

    let mut b = cpu();
    b.p.location[0].mapping_id = 3;
    let err = convert(&b.bytes()).expect_err("unknown mapping");
    assert!(
        matches!(
            err,
            PprofError::UnknownId {
                what: "mapping",
                id: 3,
                ..
            }
        ),
        "{err:?}"
    );

    let mut b = cpu();
    b.p.location[1].id = 1;
    let err = convert(&b.bytes()).expect_err("duplicate");
    assert!(
        matches!(
            err,
            PprofError::DuplicateId {
                what: "location",
                id: 1
            }
        ),
        "{err:?}"
    );
}

#[test]
fn value_count_mismatch() {
    let mut b = cpu();
    b.p.sample[1].value.pop();
    let err = convert(&b.bytes()).expect_err("one value for two types");
    assert!(
        matches!(
            err,
            PprofError::ValueCount {
                sample: 1,
                got: 1,
                want: 2
            }
        ),
        "{err:?}"
    );
}

#[test]
fn first_string_must_be_empty() {
    let mut b = cpu();
    b.p.string_table[0] = "x".into();
    let err = convert(&b.bytes()).expect_err("bad string table");
    assert!(matches!(err, PprofError::Invalid { .. }), "{err:?}");
}

#[test]
fn bad_utf8_string_is_a_protobuf_error() {
    // Profile { string_table: ["", "\xff"] }
    let bytes = [0x32, 0x00, 0x32, 0x01, 0xff];
    let err = convert(&bytes).expect_err("bad utf-8");
    assert!(matches!(err, PprofError::Protobuf(_)), "{err:?}");
}

#[test]
fn mutated_payloads_never_panic() {
    let mut b = cpu();
    b.sample(
        &[1],
        &[5, 5],
        &[("span_id", "00f067aa0ba902b7"), ("trace id", "77")],
    );
    let bytes = b.bytes();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut m = bytes.clone();
            m[i] ^= flip;
            let _ = convert(&m);
        }
    }
}

#[test]
fn from_otlp_rejects_dangling_indices() {
    let mut req = convert(&cpu().bytes()).expect("converts");
    req.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 99;
    let err = from_otlp(&req).expect_err("dangling stack");
    assert!(
        matches!(
            err,
            PprofError::OtlpIndex {
                table: "stack_table",
                index: 99,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn from_otlp_handles_unaligned_profiles() {
    let mut req = convert(&cpu().bytes()).expect("converts");
    req.resource_profiles[0].scope_profiles[0].profiles[1]
        .samples
        .pop();
    let back = from_otlp(&req).expect("converts back");
    let values: Vec<Vec<i64>> = back.sample.iter().map(|s| s.value.clone()).collect();
    assert_eq!(values, [vec![1, 0], vec![2, 0], vec![0, 10_000_000]]);
}

// ---------------------------------------------------------------------------------------------
// Round trip: random pprof -> to_otlp -> from_otlp keeps every sample

#[derive(Clone, Copy, Debug)]
enum Form {
    Hex,
    UpperHex,
    Decimal,
}

#[derive(Clone, Debug)]
struct GenLocation {
    lines: Vec<(Index, i64, i64)>,
    mapping: Option<Index>,
    address: u64,
    folded: bool,
}

#[derive(Clone, Debug)]
struct GenSample {
    stack: Vec<Index>,
    values: Vec<i64>,
    strs: Vec<(String, String)>,
    nums: Vec<(String, i64, String)>,
    span: Option<(Index, u64, Form)>,
    trace: Option<(Index, u128, Form)>,
    /// A value under Datadog's keys that is not an id, so it must stay a label.
    garbage: Option<(bool, String)>,
}

#[derive(Clone, Debug)]
struct GenProfile {
    types: Vec<(String, String)>,
    functions: Vec<(String, String, i64)>,
    mappings: Vec<(String, String)>,
    locations: Vec<GenLocation>,
    samples: Vec<GenSample>,
    /// Ids as base + i * stride, so both the dense and the sparse id lookups run.
    ids: (u64, u64),
    /// Append every string anew instead of interning (pprof allows duplicates).
    dup_strings: bool,
    gzip: bool,
}

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(pool).prop_map(str::to_owned)
}

/// Mostly the realistic pool, sometimes any text matching `pattern` (unicode included).
fn or_random(pool: &'static [&'static str], pattern: &'static str) -> BoxedStrategy<String> {
    prop_oneof![3 => pick(pool), 1 => pattern].boxed()
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![Just(Form::Hex), Just(Form::UpperHex), Just(Form::Decimal)]
}

fn gen_sample() -> impl Strategy<Value = GenSample> {
    let strs = prop::collection::vec(
        (
            // Random keys cannot spell an id key (those have `_` or a space).
            or_random(&["thread", "domain", "stage", "k"], "[a-z]{1,6}"),
            // Never empty: pprof cannot tell an empty string label from the number 0.
            or_random(&["a", "payment", "validation", "x y"], "\\PC{1,10}"),
        ),
        0..3,
    );
    let nums = prop::collection::vec(
        (
            pick(&["bytes", "n", "objects"]),
            any::<i64>(),
            or_random(&["", "bytes", "count"], "[a-z]{0,5}"),
        ),
        0..3,
    );
    // Decimal span ids skip exactly 16 digits, which are read as hex by design.
    let span_value = prop_oneof![1u64..1_000_000_000_000_000, 10_000_000_000_000_000u64..=u64::MAX];
    let span = prop::option::of((any::<Index>(), span_value, form()));
    let trace = prop::option::of((any::<Index>(), 1u128..=u128::MAX, form()));
    let garbage = prop::option::of((
        any::<bool>(),
        pick(&[
            "not-an-id",
            "0",
            "0000000000000000",
            "+5",
            "-1",
            "0x12ab",
            "99999999999999999999999",
        ]),
    ));
    (
        prop::collection::vec(any::<Index>(), 0..8),
        prop::collection::vec(any::<i64>(), 4),
        strs,
        nums,
        span,
        trace,
        garbage,
    )
        .prop_map(|(stack, values, strs, nums, span, trace, garbage)| GenSample {
            stack,
            values,
            strs,
            nums,
            span,
            trace,
            garbage,
        })
}

fn gen_profile() -> impl Strategy<Value = GenProfile> {
    let types = prop::collection::vec(
        (
            pick(&["samples", "cpu", "alloc_space", "inuse"]),
            pick(&["count", "nanoseconds", "bytes"]),
        ),
        1..=4,
    );
    let names = &[
        "main.main",
        "main.work",
        "runtime.mallocgc",
        "net/http.(*conn).serve",
        "",
        "f",
    ];
    let functions = prop::collection::vec(
        (
            or_random(names, "\\PC{0,10}"),
            or_random(&["main.go", "/go/src/runtime/malloc.go", ""], "\\PC{0,10}"),
            0i64..3,
        ),
        1..6,
    );
    let mappings = prop::collection::vec(
        (pick(&["/bin/app", "libc.so.6", ""]), pick(&["", "abc", "f00d"])),
        0..3,
    );
    let location = (
        prop::collection::vec((any::<Index>(), 0i64..50, 0i64..3), 0..3),
        any::<Option<Index>>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(lines, mapping, address, folded)| GenLocation {
            lines,
            mapping,
            address,
            folded,
        });
    let locations = prop::collection::vec(location, 1..10);
    let samples = prop::collection::vec(gen_sample(), 0..25);
    let ids = prop_oneof![Just((1u64, 1u64)), (1u64..1000, 1u64..5)];
    (
        types,
        functions,
        mappings,
        locations,
        samples,
        ids,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(types, functions, mappings, locations, samples, ids, dup_strings, gzip)| GenProfile {
                types,
                functions,
                mappings,
                locations,
                samples,
                ids,
                dup_strings,
                gzip,
            },
        )
}

const SPAN_KEYS: [&str; 3] = ["span_id", "profile_id", "span id"];
const TRACE_KEYS: [&str; 2] = ["trace_id", "trace id"];

fn span_text(v: u64, form: Form) -> String {
    match form {
        Form::Hex => format!("{v:016x}"),
        Form::UpperHex => format!("{v:016X}"),
        Form::Decimal => v.to_string(),
    }
}

/// Decimal trace ids only carry 64 bits, so the generator's 128-bit value keeps its low half.
fn trace_value(v: u128, form: Form) -> u128 {
    match form {
        Form::Decimal => v & u128::from(u64::MAX),
        _ => v,
    }
}

fn trace_text(v: u128, form: Form) -> String {
    match form {
        Form::Hex => format!("{v:032x}"),
        Form::UpperHex => format!("{v:032X}"),
        Form::Decimal => (v as u64).to_string(),
    }
}

struct Strings {
    table: Vec<String>,
    seen: HashMap<String, i64>,
    dup: bool,
}

impl Strings {
    fn s(&mut self, v: &str) -> i64 {
        if v.is_empty() {
            return 0;
        }
        if !self.dup {
            if let Some(&i) = self.seen.get(v) {
                return i;
            }
        }
        let i = self.table.len() as i64;
        self.table.push(v.to_owned());
        self.seen.insert(v.to_owned(), i);
        i
    }
}

fn build(g: &GenProfile) -> pb::Profile {
    let mut st = Strings {
        table: vec![String::new()],
        seen: HashMap::new(),
        dup: g.dup_strings,
    };
    let (base, stride) = g.ids;
    let id = |i: usize| base + i as u64 * stride;
    let mut p = pb::Profile::default();
    for (ty, unit) in &g.types {
        p.sample_type.push(pb::ValueType {
            r#type: st.s(ty),
            unit: st.s(unit),
        });
    }
    for (i, (name, file, start)) in g.functions.iter().enumerate() {
        p.function.push(pb::Function {
            id: id(i),
            name: st.s(name),
            system_name: 0,
            filename: st.s(file),
            start_line: *start,
        });
    }
    for (i, (file, build_id)) in g.mappings.iter().enumerate() {
        p.mapping.push(pb::Mapping {
            id: i as u64 + 1,
            filename: st.s(file),
            build_id: st.s(build_id),
            ..Default::default()
        });
    }
    for (i, l) in g.locations.iter().enumerate() {
        let line = l
            .lines
            .iter()
            .map(|(f, line, column)| pb::Line {
                function_id: id(f.index(g.functions.len())),
                line: *line,
                column: *column,
            })
            .collect();
        let mapping_id = match (l.mapping, g.mappings.len()) {
            (Some(m), n) if n > 0 => m.index(n) as u64 + 1,
            _ => 0,
        };
        p.location.push(pb::Location {
            id: id(i),
            mapping_id,
            address: l.address,
            line,
            is_folded: l.folded,
        });
    }
    for s in &g.samples {
        let mut label = Vec::new();
        let text = |k: &str, v: &str, st: &mut Strings| pb::Label {
            key: st.s(k),
            str: st.s(v),
            ..Default::default()
        };
        for (k, v) in &s.strs {
            label.push(text(k, v, &mut st));
        }
        if let Some((k, v, form)) = s.span {
            label.push(text(
                SPAN_KEYS[k.index(SPAN_KEYS.len())],
                &span_text(v, form),
                &mut st,
            ));
        }
        if let Some((k, v, form)) = s.trace {
            label.push(text(
                TRACE_KEYS[k.index(TRACE_KEYS.len())],
                &trace_text(v, form),
                &mut st,
            ));
        }
        if let Some((span_key, v)) = &s.garbage {
            label.push(text(if *span_key { "span id" } else { "trace id" }, v, &mut st));
        }
        for (k, n, unit) in &s.nums {
            label.push(pb::Label {
                key: st.s(k),
                num: *n,
                num_unit: st.s(unit),
                ..Default::default()
            });
        }
        let location_id = s.stack.iter().map(|l| id(l.index(g.locations.len()))).collect();
        let value = s.values[..g.types.len()].to_vec();
        p.sample.push(pb::Sample {
            location_id,
            value,
            label,
        });
    }
    p.string_table = st.table;
    p
}

/// A sample as the round trip must keep it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Norm {
    /// Every line of every location, leaf first: (function name, filename, line).
    stack: Vec<(String, String, i64)>,
    values: Vec<i64>,
    strs: Vec<(String, String)>,
    nums: Vec<(String, i64, String)>,
    span: Option<String>,
    trace: Option<String>,
}

fn expected(g: &GenProfile) -> Vec<Norm> {
    let mut out: Vec<Norm> = g
        .samples
        .iter()
        .map(|s| {
            let mut stack = Vec::new();
            for l in &s.stack {
                for (f, line, _) in &g.locations[l.index(g.locations.len())].lines {
                    let (name, file, _) = &g.functions[f.index(g.functions.len())];
                    stack.push((name.clone(), file.clone(), *line));
                }
            }
            let mut strs = s.strs.clone();
            if let Some((span_key, v)) = &s.garbage {
                strs.push((
                    if *span_key { "span id" } else { "trace id" }.to_owned(),
                    v.clone(),
                ));
            }
            strs.sort();
            let mut nums = s.nums.clone();
            nums.sort();
            Norm {
                stack,
                values: s.values[..g.types.len()].to_vec(),
                strs,
                nums,
                span: s.span.map(|(_, v, _)| format!("{v:016x}")),
                trace: s
                    .trace
                    .map(|(_, v, form)| format!("{:032x}", trace_value(v, form))),
            }
        })
        .collect();
    out.sort();
    out
}

fn normalize(p: &pb::Profile) -> Vec<Norm> {
    let s = |i: i64| p.string_table[i as usize].clone();
    let functions: HashMap<u64, &pb::Function> = p.function.iter().map(|f| (f.id, f)).collect();
    let locations: HashMap<u64, &pb::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    let mut out: Vec<Norm> = p
        .sample
        .iter()
        .map(|sample| {
            let mut stack = Vec::new();
            for id in &sample.location_id {
                for line in &locations[id].line {
                    let (name, file) = match functions.get(&line.function_id) {
                        Some(f) => (s(f.name), s(f.filename)),
                        None => (String::new(), String::new()),
                    };
                    stack.push((name, file, line.line));
                }
            }
            let mut n = Norm {
                stack,
                values: sample.value.clone(),
                strs: vec![],
                nums: vec![],
                span: None,
                trace: None,
            };
            for l in &sample.label {
                match (s(l.key).as_str(), l.str) {
                    ("span_id", v) if v != 0 => n.span = Some(s(v)),
                    ("trace_id", v) if v != 0 => n.trace = Some(s(v)),
                    (k, 0) => n.nums.push((k.to_owned(), l.num, s(l.num_unit))),
                    (k, v) => n.strs.push((k.to_owned(), s(v))),
                }
            }
            n.strs.sort();
            n.nums.sort();
            n
        })
        .collect();
    out.sort();
    out
}

/// What the OTLP spec asks of any dictionary, checked on every generated request.
fn check_dictionary(d: &otlp::ProfilesDictionary) -> Result<(), TestCaseError> {
    prop_assert_eq!(&d.string_table[0], "");
    prop_assert_eq!(&d.stack_table[0], &otlp::Stack::default());
    prop_assert_eq!(&d.location_table[0], &otlp::Location::default());
    prop_assert_eq!(&d.function_table[0], &otlp::Function::default());
    prop_assert_eq!(&d.mapping_table[0], &otlp::Mapping::default());
    prop_assert_eq!(&d.link_table[0], &otlp::Link::default());
    prop_assert_eq!(&d.attribute_table[0], &otlp::KeyValueAndUnit::default());
    fn unique<T: PartialEq + std::fmt::Debug>(table: &[T]) -> Result<(), TestCaseError> {
        for (i, a) in table.iter().enumerate() {
            prop_assert!(!table[..i].contains(a), "duplicate entry {:?}", a);
        }
        Ok(())
    }
    unique(&d.string_table)?;
    unique(&d.stack_table)?;
    unique(&d.location_table)?;
    unique(&d.function_table)?;
    unique(&d.mapping_table)?;
    unique(&d.link_table)?;
    unique(&d.attribute_table)?;
    Ok(())
}

proptest! {
    #[test]
    fn round_trip_keeps_every_sample(g in gen_profile()) {
        let p = build(&g);
        let bytes = if g.gzip { gzip(&p.encode_to_vec()) } else { p.encode_to_vec() };
        let req = to_otlp(&bytes, &ConvertOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_dictionary(dict(&req))?;
        prop_assert_eq!(profiles(&req).len(), g.types.len());

        let back = from_otlp(&req).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let types: Vec<(String, String)> = back
            .sample_type
            .iter()
            .map(|vt| (back.string_table[vt.r#type as usize].clone(), back.string_table[vt.unit as usize].clone()))
            .collect();
        prop_assert_eq!(&types, &g.types);
        // The rebuilt profile is valid pprof in its own right.
        decode(&back.encode_to_vec(), &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(normalize(&back), expected(&g));
    }
}
