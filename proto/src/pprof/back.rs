//! OTLP profiles back to one pprof profile, for tests and for exporters that speak pprof.
//!
//! Every `Profile` of the request becomes one sample type. Ids in the result: a location's is
//! its OTLP index + 1 (a stack may name index 0), a function's and a mapping's is its OTLP
//! index (index 0 is "none", which pprof spells id 0 too).

use std::collections::HashMap;

use super::links::to_hex;
use super::{pb, PprofError, BUILD_ID_KEY, IS_FOLDED_KEY};
use crate::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use crate::otlp::common::v1::any_value::Value;
use crate::otlp::profiles::v1development as otlp;

/// Rebuilds one pprof profile holding every sample type of the request.
///
/// When all profiles list the same samples in the same order (same stack, attributes and
/// link at each position, as [`super::to_otlp`] writes them) each position becomes one pprof
/// sample with one value per type. Otherwise each OTLP sample becomes its own pprof sample
/// with zeros for the other types, which keeps every total right. A sample's span and trace
/// ids come back as `span_id` / `trace_id` labels in lower-case hex.
pub fn from_otlp(req: &ExportProfilesServiceRequest) -> Result<pb::Profile, PprofError> {
    let empty = otlp::ProfilesDictionary::default();
    let dict = req.dictionary.as_ref().unwrap_or(&empty);
    let profiles: Vec<&otlp::Profile> = req
        .resource_profiles
        .iter()
        .flat_map(|r| &r.scope_profiles)
        .flat_map(|s| &s.profiles)
        .collect();
    let mut b = Builder {
        dict,
        out: pb::Profile::default(),
        strings: HashMap::new(),
        locations: HashMap::new(),
        functions: HashMap::new(),
        mappings: HashMap::new(),
    };
    b.string("");

    for (t, p) in profiles.iter().enumerate() {
        let vt = p.sample_type.as_ref().cloned().unwrap_or_default();
        let vt = b.value_type(&vt, || format!("profile {t} sample_type"))?;
        b.out.sample_type.push(vt);
    }
    if let Some(first) = profiles.first() {
        b.out.time_nanos = i64::try_from(first.time_unix_nano).unwrap_or(i64::MAX);
        b.out.duration_nanos = i64::try_from(first.duration_nano).unwrap_or(i64::MAX);
        b.out.period = first.period;
        if let Some(vt) = &first.period_type {
            b.out.period_type = Some(b.value_type(vt, || "profile 0 period_type".into())?);
        }
    }

    let types = profiles.len();
    if aligned(&profiles) {
        let count = profiles.first().map_or(0, |p| p.samples.len());
        for i in 0..count {
            let values = profiles
                .iter()
                .map(|p| p.samples.get(i).map_or(0, total))
                .collect();
            if let Some(s) = profiles.first().and_then(|p| p.samples.get(i)) {
                let sample = b.sample(s, values, || format!("profile 0 sample {i}"))?;
                b.out.sample.push(sample);
            }
        }
    } else {
        for (t, p) in profiles.iter().enumerate() {
            for (i, s) in p.samples.iter().enumerate() {
                let mut values = vec![0; types];
                if let Some(v) = values.get_mut(t) {
                    *v = total(s);
                }
                let sample = b.sample(s, values, || format!("profile {t} sample {i}"))?;
                b.out.sample.push(sample);
            }
        }
    }
    Ok(b.out)
}

/// Same samples in the same order in every profile.
fn aligned(profiles: &[&otlp::Profile]) -> bool {
    let Some((first, rest)) = profiles.split_first() else {
        return true;
    };
    rest.iter().all(|p| {
        p.samples.len() == first.samples.len()
            && p.samples.iter().zip(&first.samples).all(|(a, b)| {
                a.stack_index == b.stack_index
                    && a.attribute_indices == b.attribute_indices
                    && a.link_index == b.link_index
            })
    })
}

/// pprof keeps one aggregate per sample: the sum of the values, or with only timestamps, one
/// event per timestamp (the OTLP rule for value-less samples).
fn total(s: &otlp::Sample) -> i64 {
    if s.values.is_empty() {
        i64::try_from(s.timestamps_unix_nano.len()).unwrap_or(i64::MAX)
    } else {
        s.values.iter().fold(0i64, |acc, v| acc.saturating_add(*v))
    }
}

fn get<'t, T>(
    table: &'t [T],
    index: i32,
    name: &'static str,
    at: impl FnOnce() -> String,
) -> Result<&'t T, PprofError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .ok_or_else(|| PprofError::OtlpIndex {
            table: name,
            index: i64::from(index),
            len: table.len(),
            at: at(),
        })
}

struct Builder<'a> {
    dict: &'a otlp::ProfilesDictionary,
    out: pb::Profile,
    /// String to its pprof index.
    strings: HashMap<String, i64>,
    /// OTLP index to pprof id, for entries already written.
    locations: HashMap<i32, u64>,
    functions: HashMap<i32, u64>,
    mappings: HashMap<i32, u64>,
}

impl Builder<'_> {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.out.string_table.len() as i64;
        self.out.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    /// Copies a dictionary string into the pprof table.
    fn dict_string(&mut self, index: i32, at: impl FnOnce() -> String) -> Result<i64, PprofError> {
        let s = get(&self.dict.string_table, index, "string_table", at)?;
        Ok(self.string(s))
    }

    fn value_type(
        &mut self,
        vt: &otlp::ValueType,
        at: impl Fn() -> String,
    ) -> Result<pb::ValueType, PprofError> {
        Ok(pb::ValueType {
            r#type: self.dict_string(vt.type_strindex, &at)?,
            unit: self.dict_string(vt.unit_strindex, &at)?,
        })
    }

    fn sample(
        &mut self,
        s: &otlp::Sample,
        value: Vec<i64>,
        at: impl Fn() -> String,
    ) -> Result<pb::Sample, PprofError> {
        let stack = get(&self.dict.stack_table, s.stack_index, "stack_table", &at)?;
        let mut location_id = Vec::with_capacity(stack.location_indices.len());
        for &index in &stack.location_indices {
            location_id.push(self.location(index, &at)?);
        }
        let mut label = Vec::with_capacity(s.attribute_indices.len() + 2);
        for &index in &s.attribute_indices {
            let attr = get(&self.dict.attribute_table, index, "attribute_table", &at)?;
            if let Some(l) = self.label(attr, &at)? {
                label.push(l);
            }
        }
        if s.link_index != 0 {
            let link = get(&self.dict.link_table, s.link_index, "link_table", &at)?;
            for (key, id) in [("span_id", &link.span_id), ("trace_id", &link.trace_id)] {
                if !id.is_empty() {
                    let hex = to_hex(id);
                    label.push(pb::Label {
                        key: self.string(key),
                        str: self.string(&hex),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(pb::Sample {
            location_id,
            value,
            label,
        })
    }

    /// A sample attribute as a pprof label: integers stay numeric (with their unit), strings
    /// and other scalars become string labels; lists, maps, bytes and empty values have no
    /// pprof form and are left out.
    fn label(
        &mut self,
        attr: &otlp::KeyValueAndUnit,
        at: impl Fn() -> String,
    ) -> Result<Option<pb::Label>, PprofError> {
        let text = match attr.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::IntValue(n)) => {
                return Ok(Some(pb::Label {
                    key: self.dict_string(attr.key_strindex, &at)?,
                    num: *n,
                    num_unit: self.dict_string(attr.unit_strindex, &at)?,
                    ..Default::default()
                }));
            }
            Some(Value::StringValue(s)) => s.clone(),
            Some(Value::StringValueStrindex(i)) => {
                get(&self.dict.string_table, *i, "string_table", &at)?.clone()
            }
            Some(Value::BoolValue(b)) => b.to_string(),
            Some(Value::DoubleValue(d)) => d.to_string(),
            _ => return Ok(None),
        };
        let key = self.dict_string(attr.key_strindex, &at)?;
        Ok(Some(pb::Label {
            key,
            str: self.string(&text),
            ..Default::default()
        }))
    }

    fn location(&mut self, index: i32, at: impl Fn() -> String) -> Result<u64, PprofError> {
        if let Some(&id) = self.locations.get(&index) {
            return Ok(id);
        }
        let l = get(&self.dict.location_table, index, "location_table", &at)?;
        let mut line = Vec::with_capacity(l.lines.len());
        for ln in &l.lines {
            let function_id = self.function(ln.function_index, &at)?;
            line.push(pb::Line {
                function_id,
                line: ln.line,
                column: ln.column,
            });
        }
        let is_folded = self.has_attribute(&l.attribute_indices, IS_FOLDED_KEY, |v| {
            matches!(v, Value::BoolValue(true))
        });
        // Indices are non-negative once `get` accepted them.
        let id = u64::try_from(index).unwrap_or(0) + 1;
        let mapping_id = self.mapping(l.mapping_index, &at)?;
        self.out.location.push(pb::Location {
            id,
            mapping_id,
            address: l.address,
            line,
            is_folded,
        });
        self.locations.insert(index, id);
        Ok(id)
    }

    fn function(&mut self, index: i32, at: impl Fn() -> String) -> Result<u64, PprofError> {
        if index == 0 {
            return Ok(0);
        }
        if let Some(&id) = self.functions.get(&index) {
            return Ok(id);
        }
        let f = get(&self.dict.function_table, index, "function_table", &at)?;
        let id = u64::try_from(index).unwrap_or(0);
        let function = pb::Function {
            id,
            name: self.dict_string(f.name_strindex, &at)?,
            system_name: self.dict_string(f.system_name_strindex, &at)?,
            filename: self.dict_string(f.filename_strindex, &at)?,
            start_line: f.start_line,
        };
        self.out.function.push(function);
        self.functions.insert(index, id);
        Ok(id)
    }

    fn mapping(&mut self, index: i32, at: impl Fn() -> String) -> Result<u64, PprofError> {
        if index == 0 {
            return Ok(0);
        }
        if let Some(&id) = self.mappings.get(&index) {
            return Ok(id);
        }
        let m = get(&self.dict.mapping_table, index, "mapping_table", &at)?;
        let id = u64::try_from(index).unwrap_or(0);
        let build_id = self
            .string_attribute(&m.attribute_indices, BUILD_ID_KEY)
            .unwrap_or_default();
        let mapping = pb::Mapping {
            id,
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: self.dict_string(m.filename_strindex, &at)?,
            build_id: self.string(&build_id),
            ..Default::default()
        };
        self.out.mapping.push(mapping);
        self.mappings.insert(index, id);
        Ok(id)
    }

    /// The attributes among `indices` whose key is `key`; dangling indices are skipped, since
    /// they only decorate a location or mapping.
    fn attributes<'d>(&'d self, indices: &'d [i32], key: &'d str) -> impl Iterator<Item = &'d Value> + 'd {
        let dict = self.dict;
        indices.iter().filter_map(move |&i| {
            let attr = dict.attribute_table.get(usize::try_from(i).ok()?)?;
            let k = dict.string_table.get(usize::try_from(attr.key_strindex).ok()?)?;
            if k == key {
                attr.value.as_ref()?.value.as_ref()
            } else {
                None
            }
        })
    }

    fn has_attribute(&self, indices: &[i32], key: &str, pred: impl Fn(&Value) -> bool) -> bool {
        self.attributes(indices, key).any(pred)
    }

    fn string_attribute(&self, indices: &[i32], key: &str) -> Option<String> {
        self.attributes(indices, key).find_map(|v| match v {
            Value::StringValue(s) => Some(s.clone()),
            Value::StringValueStrindex(i) => self.dict.string_table.get(usize::try_from(*i).ok()?).cloned(),
            _ => None,
        })
    }
}
