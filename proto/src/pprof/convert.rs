//! pprof to OTLP profiles: one `Profile` per sample type over one shared dictionary.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;

use super::decode::{decode_indexed, Decoded, IdIndex, Limits};
use super::links::{parse_span_id, parse_trace_id};
use super::{pb, PprofError, BUILD_ID_KEY, IS_FOLDED_KEY, ORIGINAL_FORMAT};
use crate::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use crate::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use crate::otlp::profiles::v1development as otlp;
use crate::otlp::resource::v1::Resource;

/// How [`to_otlp`] reads and labels a pprof payload.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Label keys whose value is a span id, most trusted first.
    pub span_id_labels: Vec<String>,
    /// Label keys whose value is a trace id, most trusted first.
    pub trace_id_labels: Vec<String>,
    /// Attributes of the one `Resource` the profiles are reported under.
    pub resource_attributes: Vec<KeyValue>,
    /// `InstrumentationScope.name`: who did the conversion.
    pub scope_name: String,
    /// Attach the payload as received (still gzipped, if it was) to the first `Profile`, for
    /// backends that want what the conversion drops. Off by default, as OTLP recommends.
    pub include_original_payload: bool,
    /// The payload is a snapshot (a goroutine profile): stamp it as one instant.
    pub snapshot: Option<Snapshot>,
    pub limits: Limits,
}

/// How a snapshot profile is placed in time. Each of its samples gets the snapshot's instant
/// as its one timestamp, so a reader can find what was running at that instant, and the
/// profile's duration is the wall time each counted item stands for (the snapshot period).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The period the snapshots are taken on, ns: the profile's `duration_nano`.
    pub period_nano: u64,
    /// The instant when the payload carries no `time_nanos` (Unix ns).
    pub fallback_time_unix_nano: u64,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        let strings = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect();
        ConvertOptions {
            // otel-profiling-go and pyroscope; older pyroscope; Datadog.
            span_id_labels: strings(&["span_id", "profile_id", "span id"]),
            trace_id_labels: strings(&["trace_id", "trace id"]),
            resource_attributes: Vec::new(),
            scope_name: "hotspan/pprof".to_owned(),
            include_original_payload: false,
            snapshot: None,
            limits: Limits::default(),
        }
    }
}

/// Converts a pprof payload (gzipped or raw) to an OTLP profiles request.
///
/// Each pprof sample appears once in every `Profile`, in pprof order, even where its value
/// for that type is zero: sample `i` of each profile is pprof sample `i`, which is what lets
/// [`super::from_otlp`] put the types back together.
pub fn to_otlp(bytes: &[u8], opts: &ConvertOptions) -> Result<ExportProfilesServiceRequest, PprofError> {
    let decoded = decode_indexed(bytes, &opts.limits)?;
    let src = &decoded.profile;
    let types = src.sample_type.len();
    if src.sample.len().saturating_mul(types) > opts.limits.max_samples {
        return Err(PprofError::Limit {
            what: "max_samples",
            limit: opts.limits.max_samples,
            at: format!(
                "OTLP samples ({} pprof samples x {types} sample types)",
                src.sample.len()
            ),
        });
    }

    let mut c = Converter::new(&decoded, opts);
    // Stack, attributes and link are the same in every profile, so they are built once. With
    // no sample types there are no profiles to hold samples, and nothing to build.
    let mut heads = Vec::with_capacity(if types == 0 { 0 } else { src.sample.len() });
    if types > 0 {
        let mut stack = Vec::new();
        for (i, s) in src.sample.iter().enumerate() {
            heads.push(c.sample_head(i, s, &mut stack)?);
        }
    }
    let period_type = src.period_type.as_ref().map(|vt| c.value_type(vt)).transpose()?;
    // Negative times are nonsense in pprof too; 0 reads as "unknown".
    let mut time_unix_nano = u64::try_from(src.time_nanos).unwrap_or(0);
    let mut duration_nano = u64::try_from(src.duration_nanos).unwrap_or(0);
    let mut timestamps = Vec::new();
    if let Some(snap) = opts.snapshot {
        if time_unix_nano == 0 {
            time_unix_nano = snap.fallback_time_unix_nano;
        }
        duration_nano = snap.period_nano;
        timestamps.push(time_unix_nano);
    }
    let mut profiles = Vec::with_capacity(types);
    for (t, vt) in src.sample_type.iter().enumerate() {
        let samples = heads
            .iter()
            .zip(&src.sample)
            .map(|(head, s)| otlp::Sample {
                stack_index: head.stack,
                attribute_indices: head.attributes.clone(),
                link_index: head.link,
                // Validation guarantees one value per sample type.
                values: vec![s.value.get(t).copied().unwrap_or_default()],
                timestamps_unix_nano: timestamps.clone(),
            })
            .collect();
        profiles.push(otlp::Profile {
            sample_type: Some(c.value_type(vt)?),
            samples,
            time_unix_nano,
            duration_nano,
            period_type,
            period: src.period,
            ..Default::default()
        });
    }
    if opts.include_original_payload {
        // Only the first: the payload can be megabytes and every profile came from it.
        if let Some(first) = profiles.first_mut() {
            first.original_payload_format = ORIGINAL_FORMAT.to_owned();
            first.original_payload = bytes.to_vec();
        }
    }

    Ok(ExportProfilesServiceRequest {
        resource_profiles: vec![otlp::ResourceProfiles {
            resource: Some(Resource {
                attributes: opts.resource_attributes.clone(),
                ..Default::default()
            }),
            scope_profiles: vec![otlp::ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: opts.scope_name.clone(),
                    ..Default::default()
                }),
                profiles,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(c.dict.finish()),
    })
}

/// What a pprof sample contributes to every profile.
struct SampleHead {
    stack: i32,
    attributes: Vec<i32>,
    link: i32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Span,
    Trace,
}

/// Attribute values as the dictionary dedups them (`AnyValue` has no `Hash`).
#[derive(Hash, PartialEq, Eq)]
enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

type LocationKey = (i32, u64, Vec<(i32, i64, i64)>, Vec<i32>);
type MappingKey = (u64, u64, u64, i32, Vec<i32>);
/// (trace id, span id), either absent.
type LinkKey = (Option<[u8; 16]>, Option<[u8; 8]>);

/// The output dictionary, deduplicating by value as the OTLP spec asks. Each table starts with
/// its zero value at index 0 ("none"), and each dedup map knows that entry, so a zero-valued
/// item converted later lands on index 0 instead of becoming a duplicate.
struct Dict {
    strings: Vec<String>,
    string_ids: HashMap<String, i32>,
    functions: Vec<otlp::Function>,
    function_ids: HashMap<(i32, i32, i32, i64), i32>,
    mappings: Vec<otlp::Mapping>,
    mapping_ids: HashMap<MappingKey, i32>,
    locations: Vec<otlp::Location>,
    location_ids: HashMap<LocationKey, i32>,
    stacks: Vec<otlp::Stack>,
    stack_ids: HashMap<Vec<i32>, i32>,
    attributes: Vec<otlp::KeyValueAndUnit>,
    attribute_ids: HashMap<(i32, AttrValue, i32), i32>,
    links: Vec<otlp::Link>,
    link_ids: HashMap<LinkKey, i32>,
}

/// Dictionary references are i32 on the wire; the limits keep tables far below that, but a
/// caller may raise them.
fn next_index(len: usize, table: &'static str) -> Result<i32, PprofError> {
    i32::try_from(len).map_err(|_| PprofError::Limit {
        what: "OTLP dictionary index (i32)",
        limit: i32::MAX as usize,
        at: table.to_owned(),
    })
}

/// A dedup map that knows only the zero value, at index 0.
fn zero<K: Hash + Eq>(key: K) -> HashMap<K, i32> {
    HashMap::from([(key, 0)])
}

fn insert<K: Hash + Eq, V>(
    ids: &mut HashMap<K, i32>,
    table: &mut Vec<V>,
    key: K,
    value: impl FnOnce() -> V,
    name: &'static str,
) -> Result<i32, PprofError> {
    match ids.entry(key) {
        Entry::Occupied(e) => Ok(*e.get()),
        Entry::Vacant(e) => {
            let index = next_index(table.len(), name)?;
            table.push(value());
            Ok(*e.insert(index))
        }
    }
}

impl Dict {
    fn new() -> Self {
        Dict {
            strings: vec![String::new()],
            string_ids: zero(String::new()),
            functions: vec![otlp::Function::default()],
            function_ids: zero((0, 0, 0, 0)),
            mappings: vec![otlp::Mapping::default()],
            mapping_ids: zero((0, 0, 0, 0, Vec::new())),
            locations: vec![otlp::Location::default()],
            location_ids: zero((0, 0, Vec::new(), Vec::new())),
            stacks: vec![otlp::Stack::default()],
            stack_ids: zero(Vec::new()),
            // The zero attribute has no value, which no label produces, so it needs no key.
            attributes: vec![otlp::KeyValueAndUnit::default()],
            attribute_ids: HashMap::new(),
            links: vec![otlp::Link::default()],
            link_ids: zero((None, None)),
        }
    }

    fn string(&mut self, s: &str) -> Result<i32, PprofError> {
        if let Some(&i) = self.string_ids.get(s) {
            return Ok(i);
        }
        insert(
            &mut self.string_ids,
            &mut self.strings,
            s.to_owned(),
            || s.to_owned(),
            "string_table",
        )
    }

    fn stack(&mut self, locations: &[i32]) -> Result<i32, PprofError> {
        // Looked up by slice first: most samples repeat a stack already seen.
        if let Some(&i) = self.stack_ids.get(locations) {
            return Ok(i);
        }
        let make = || otlp::Stack {
            location_indices: locations.to_vec(),
        };
        insert(
            &mut self.stack_ids,
            &mut self.stacks,
            locations.to_vec(),
            make,
            "stack_table",
        )
    }

    fn attribute(&mut self, key: i32, value: AttrValue, unit: i32) -> Result<i32, PprofError> {
        let any = match &value {
            AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
            AttrValue::Int(n) => any_value::Value::IntValue(*n),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        };
        let make = || otlp::KeyValueAndUnit {
            key_strindex: key,
            value: Some(AnyValue { value: Some(any) }),
            unit_strindex: unit,
        };
        insert(
            &mut self.attribute_ids,
            &mut self.attributes,
            (key, value, unit),
            make,
            "attribute_table",
        )
    }

    fn link(&mut self, trace: Option<[u8; 16]>, span: Option<[u8; 8]>) -> Result<i32, PprofError> {
        let make = || otlp::Link {
            trace_id: trace.map(|t| t.to_vec()).unwrap_or_default(),
            span_id: span.map(|s| s.to_vec()).unwrap_or_default(),
        };
        insert(
            &mut self.link_ids,
            &mut self.links,
            (trace, span),
            make,
            "link_table",
        )
    }

    fn finish(self) -> otlp::ProfilesDictionary {
        otlp::ProfilesDictionary {
            mapping_table: self.mappings,
            location_table: self.locations,
            function_table: self.functions,
            link_table: self.links,
            string_table: self.strings,
            attribute_table: self.attributes,
            stack_table: self.stacks,
        }
    }
}

/// Walks the validated pprof profile, converting each function, mapping and location the
/// first time a sample reaches it, so the dictionary holds no orphans.
struct Converter<'a> {
    src: &'a Decoded,
    dict: Dict,
    /// pprof string index to dictionary index; 0 means "not yet" (index 0 is special-cased).
    strings: Vec<i32>,
    /// pprof table position to dictionary index, filled on first use.
    functions: Vec<Option<i32>>,
    mappings: Vec<Option<i32>>,
    locations: Vec<Option<i32>>,
    /// A label (key, str, num, num_unit) to its attribute: labels repeat across samples, and
    /// this skips hashing their strings again.
    labels: HashMap<(i64, i64, i64, i64), i32>,
    /// Which label keys carry span or trace ids, with their priority (lower wins).
    roles: HashMap<&'a str, (Role, usize)>,
}

impl<'a> Converter<'a> {
    fn new(src: &'a Decoded, opts: &'a ConvertOptions) -> Self {
        let mut roles = HashMap::new();
        // A key listed for both keeps its span role: span ids are the stronger join key.
        for (prio, key) in opts.span_id_labels.iter().enumerate() {
            roles.entry(key.as_str()).or_insert((Role::Span, prio));
        }
        for (prio, key) in opts.trace_id_labels.iter().enumerate() {
            roles.entry(key.as_str()).or_insert((Role::Trace, prio));
        }
        let p = &src.profile;
        Converter {
            src,
            dict: Dict::new(),
            strings: vec![0; p.string_table.len()],
            functions: vec![None; p.function.len()],
            mappings: vec![None; p.mapping.len()],
            locations: vec![None; p.location.len()],
            labels: HashMap::new(),
            roles,
        }
    }

    /// A pprof string. Validation checked every index, so only index 0 of an empty table
    /// misses, and that one is "" by definition.
    fn pstr(&self, index: i64) -> &'a str {
        let table = &self.src.profile.string_table;
        usize::try_from(index)
            .ok()
            .and_then(|i| table.get(i))
            .map_or("", String::as_str)
    }

    fn string(&mut self, index: i64) -> Result<i32, PprofError> {
        let Some(slot) = usize::try_from(index)
            .ok()
            .filter(|&i| i > 0 && i < self.strings.len())
        else {
            return Ok(0);
        };
        if let Some(&known) = self.strings.get(slot).filter(|&&i| i != 0) {
            return Ok(known);
        }
        let out = self.dict.string(self.pstr(index))?;
        if let Some(memo) = self.strings.get_mut(slot) {
            *memo = out;
        }
        Ok(out)
    }

    fn value_type(&mut self, vt: &pb::ValueType) -> Result<otlp::ValueType, PprofError> {
        Ok(otlp::ValueType {
            type_strindex: self.string(vt.r#type)?,
            unit_strindex: self.string(vt.unit)?,
        })
    }

    /// Position of `id` in its pprof table, or the error naming the dangling reference.
    fn position(
        index: &IdIndex,
        id: u64,
        what: &'static str,
        at: impl FnOnce() -> String,
    ) -> Result<usize, PprofError> {
        index
            .get(id)
            .ok_or_else(|| PprofError::UnknownId { what, id, at: at() })
    }

    fn function(&mut self, id: u64, at: impl FnOnce() -> String) -> Result<i32, PprofError> {
        if id == 0 {
            return Ok(0);
        }
        let pos = Self::position(&self.src.functions, id, "function", at)?;
        if let Some(Some(known)) = self.functions.get(pos) {
            return Ok(*known);
        }
        let Some(f) = self.src.profile.function.get(pos) else {
            return Ok(0);
        };
        let key = (
            self.string(f.name)?,
            self.string(f.system_name)?,
            self.string(f.filename)?,
            f.start_line,
        );
        let make = || otlp::Function {
            name_strindex: key.0,
            system_name_strindex: key.1,
            filename_strindex: key.2,
            start_line: key.3,
        };
        let out = insert(
            &mut self.dict.function_ids,
            &mut self.dict.functions,
            key,
            make,
            "function_table",
        )?;
        if let Some(memo) = self.functions.get_mut(pos) {
            *memo = Some(out);
        }
        Ok(out)
    }

    fn mapping(&mut self, id: u64, at: impl FnOnce() -> String) -> Result<i32, PprofError> {
        if id == 0 {
            return Ok(0);
        }
        let pos = Self::position(&self.src.mappings, id, "mapping", at)?;
        if let Some(Some(known)) = self.mappings.get(pos) {
            return Ok(*known);
        }
        let Some(m) = self.src.profile.mapping.get(pos) else {
            return Ok(0);
        };
        let mut attributes = Vec::new();
        if m.build_id != 0 {
            let key = self.dict.string(BUILD_ID_KEY)?;
            let value = AttrValue::Str(self.pstr(m.build_id).to_owned());
            attributes.push(self.dict.attribute(key, value, 0)?);
        }
        let key = (
            m.memory_start,
            m.memory_limit,
            m.file_offset,
            self.string(m.filename)?,
            attributes,
        );
        let make = || otlp::Mapping {
            memory_start: key.0,
            memory_limit: key.1,
            file_offset: key.2,
            filename_strindex: key.3,
            attribute_indices: key.4.clone(),
        };
        let out = insert(
            &mut self.dict.mapping_ids,
            &mut self.dict.mappings,
            key.clone(),
            make,
            "mapping_table",
        )?;
        if let Some(memo) = self.mappings.get_mut(pos) {
            *memo = Some(out);
        }
        Ok(out)
    }

    fn location(&mut self, id: u64, at: impl FnOnce() -> String) -> Result<i32, PprofError> {
        let pos = Self::position(&self.src.locations, id, "location", at)?;
        if let Some(Some(known)) = self.locations.get(pos) {
            return Ok(*known);
        }
        let Some(l) = self.src.profile.location.get(pos) else {
            return Ok(0);
        };
        let mapping = self.mapping(l.mapping_id, || format!("location id {id}"))?;
        let mut lines = Vec::with_capacity(l.line.len());
        for (j, line) in l.line.iter().enumerate() {
            let function = self.function(line.function_id, || format!("location id {id} line {j}"))?;
            lines.push((function, line.line, line.column));
        }
        let mut attributes = Vec::new();
        if l.is_folded {
            let key = self.dict.string(IS_FOLDED_KEY)?;
            attributes.push(self.dict.attribute(key, AttrValue::Bool(true), 0)?);
        }
        let key = (mapping, l.address, lines, attributes);
        let make = || otlp::Location {
            mapping_index: key.0,
            address: key.1,
            lines: key
                .2
                .iter()
                .map(|&(function_index, line, column)| otlp::Line {
                    function_index,
                    line,
                    column,
                })
                .collect(),
            attribute_indices: key.3.clone(),
        };
        let out = insert(
            &mut self.dict.location_ids,
            &mut self.dict.locations,
            key.clone(),
            make,
            "location_table",
        )?;
        if let Some(memo) = self.locations.get_mut(pos) {
            *memo = Some(out);
        }
        Ok(out)
    }

    fn label(&mut self, l: &pb::Label) -> Result<i32, PprofError> {
        let memo_key = (l.key, l.str, l.num, l.num_unit);
        if let Some(&known) = self.labels.get(&memo_key) {
            return Ok(known);
        }
        let key = self.string(l.key)?;
        // As in Go's reader, a nonzero `str` makes a string label and anything else a number.
        let (value, unit) = if l.str != 0 {
            (AttrValue::Str(self.pstr(l.str).to_owned()), 0)
        } else {
            (AttrValue::Int(l.num), self.string(l.num_unit)?)
        };
        let out = self.dict.attribute(key, value, unit)?;
        self.labels.insert(memo_key, out);
        Ok(out)
    }

    fn role(&self, l: &pb::Label) -> Option<(Role, usize)> {
        if l.str == 0 {
            return None;
        }
        self.roles.get(self.pstr(l.key)).copied()
    }

    /// The sample's span and trace ids: per role, the parseable label whose key is listed
    /// first in the options (ties: the earlier label).
    fn ids(&self, s: &pb::Sample) -> (Option<[u8; 16]>, Option<[u8; 8]>) {
        let mut span: Option<(usize, [u8; 8])> = None;
        let mut trace: Option<(usize, [u8; 16])> = None;
        for l in &s.label {
            match self.role(l) {
                Some((Role::Span, prio)) if span.is_none_or(|(best, _)| prio < best) => {
                    if let Some(id) = parse_span_id(self.pstr(l.str)) {
                        span = Some((prio, id));
                    }
                }
                Some((Role::Trace, prio)) if trace.is_none_or(|(best, _)| prio < best) => {
                    if let Some(id) = parse_trace_id(self.pstr(l.str)) {
                        trace = Some((prio, id));
                    }
                }
                _ => {}
            }
        }
        (trace.map(|(_, id)| id), span.map(|(_, id)| id))
    }

    /// Whether the label only restates the link: an id label naming the id the link carries.
    /// One naming a different id stays, so no value is lost.
    fn in_link(&self, l: &pb::Label, trace: Option<[u8; 16]>, span: Option<[u8; 8]>) -> bool {
        match self.role(l) {
            Some((Role::Span, _)) => span.is_some() && parse_span_id(self.pstr(l.str)) == span,
            Some((Role::Trace, _)) => trace.is_some() && parse_trace_id(self.pstr(l.str)) == trace,
            None => false,
        }
    }

    fn sample_head(
        &mut self,
        i: usize,
        s: &pb::Sample,
        stack: &mut Vec<i32>,
    ) -> Result<SampleHead, PprofError> {
        stack.clear();
        for &id in &s.location_id {
            stack.push(self.location(id, || format!("sample {i}"))?);
        }
        let stack = self.dict.stack(stack)?;
        let (trace, span) = self.ids(s);
        let mut attributes = Vec::with_capacity(s.label.len());
        for l in &s.label {
            if !self.in_link(l, trace, span) {
                attributes.push(self.label(l)?);
            }
        }
        let link = self.dict.link(trace, span)?;
        Ok(SampleHead {
            stack,
            attributes,
            link,
        })
    }
}
