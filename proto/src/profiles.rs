use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::profiles::v1development::{Profile, ProfilesDictionary, ResourceProfiles};
use prost::Message;

use crate::{otlp_json, DecodeError, Encoding};

/// A batch of OTLP profiles (`profiles/v1development`): resource profiles plus the dictionary
/// their indices point into. Like [`crate::TracesBatch`], components use its methods only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfilesBatch {
    request: ExportProfilesServiceRequest,
    /// Samples across all profiles, kept in step with `request`.
    samples: usize,
}

/// What [`ProfilesBatch::remove_invalid_profiles`] took out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProfilesRejected {
    /// Profiles removed: the unit OTLP's partial success counts for profiles.
    pub profiles: usize,
    /// Their samples: the unit hotspan's counters use.
    pub samples: usize,
    pub reason: Option<String>,
}

fn count_samples(resource_profiles: &[ResourceProfiles]) -> usize {
    resource_profiles
        .iter()
        .flat_map(|rp| &rp.scope_profiles)
        .flat_map(|sp| &sp.profiles)
        .map(|p| p.samples.len())
        .sum()
}

impl ProfilesBatch {
    pub fn from_request(request: ExportProfilesServiceRequest) -> Self {
        let samples = count_samples(&request.resource_profiles);
        ProfilesBatch { request, samples }
    }

    /// Decodes an `ExportProfilesServiceRequest` body.
    pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Self, DecodeError> {
        let request = match encoding {
            Encoding::Protobuf => ExportProfilesServiceRequest::decode(bytes)?,
            Encoding::Json => otlp_json::decode(bytes)?,
        };
        Ok(Self::from_request(request))
    }

    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => self.request.encode_to_vec(),
            Encoding::Json => otlp_json::encode(&self.request),
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.request.encoded_len()
    }

    pub fn sample_count(&self) -> usize {
        self.samples
    }

    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    pub fn resource_profiles(&self) -> &[ResourceProfiles] {
        &self.request.resource_profiles
    }

    pub fn dictionary(&self) -> Option<&ProfilesDictionary> {
        self.request.dictionary.as_ref()
    }

    /// The dictionary's string table (empty without a dictionary).
    pub fn string_table(&self) -> &[String] {
        self.request
            .dictionary
            .as_ref()
            .map_or(&[][..], |d| &d.string_table)
    }

    /// Resource or scope attributes of this batch with every key and string value inline.
    ///
    /// OTLP profiles (proto v1.10 on) may write them as string-table references
    /// (`key_strindex`, `string_value_strindex`), as the OpenTelemetry Collector's exporters
    /// do; readers that look for `service.name` and the like must see both forms alike.
    /// Borrows when nothing refers to the table; a reference outside it reads as `""`.
    pub fn resolved_attributes<'a>(&'a self, attributes: &'a [KeyValue]) -> Cow<'a, [KeyValue]> {
        if !attributes.iter().any(has_reference) {
            return Cow::Borrowed(attributes);
        }
        let strings = self.string_table();
        Cow::Owned(
            attributes
                .iter()
                .map(|kv| resolve_key_value(kv, strings))
                .collect(),
        )
    }

    pub fn request(&self) -> &ExportProfilesServiceRequest {
        &self.request
    }

    pub fn into_request(self) -> ExportProfilesServiceRequest {
        self.request
    }

    /// Gives profiles that carry no time of their own the window the sender stated.
    pub fn with_default_window(mut self, time_unix_nano: u64, duration_nano: Option<u64>) -> Self {
        for rp in &mut self.request.resource_profiles {
            for p in rp.scope_profiles.iter_mut().flat_map(|sp| &mut sp.profiles) {
                if p.time_unix_nano == 0 {
                    p.time_unix_nano = time_unix_nano;
                }
                if p.duration_nano == 0 {
                    p.duration_nano = duration_nano.unwrap_or(0);
                }
            }
        }
        self
    }

    /// Removes profiles whose indices point outside the dictionary (or whose links carry ids
    /// of the wrong length), so nothing downstream has to trust them, and says how many went.
    pub fn remove_invalid_profiles(&mut self) -> ProfilesRejected {
        let empty = ProfilesDictionary::default();
        let dict = self.request.dictionary.as_ref().unwrap_or(&empty);
        if let Some(problem) = dictionary_problem(dict) {
            let rejected = ProfilesRejected {
                profiles: self
                    .resource_profiles()
                    .iter()
                    .flat_map(|r| &r.scope_profiles)
                    .map(|s| s.profiles.len())
                    .sum(),
                samples: self.samples,
                reason: Some(problem),
            };
            self.request.resource_profiles.clear();
            self.samples = 0;
            return rejected;
        }
        let mut rejected = ProfilesRejected::default();
        let strings = dict.string_table.len();
        for rp in &mut self.request.resource_profiles {
            let resource_ok = rp
                .resource
                .as_ref()
                .is_none_or(|r| references_in_range(&r.attributes, strings));
            for sp in &mut rp.scope_profiles {
                let scope_ok = sp
                    .scope
                    .as_ref()
                    .is_none_or(|s| references_in_range(&s.attributes, strings));
                let problem = match (resource_ok, scope_ok) {
                    (false, _) => Some("resource attribute: string index out of range"),
                    (_, false) => Some("scope attribute: string index out of range"),
                    _ => None,
                };
                sp.profiles.retain(|p| {
                    match problem.map(String::from).or_else(|| profile_problem(p, dict)) {
                        None => true,
                        Some(problem) => {
                            rejected.profiles += 1;
                            rejected.samples += p.samples.len();
                            rejected.reason.get_or_insert(problem);
                            false
                        }
                    }
                });
            }
        }
        self.samples -= rejected.samples;
        rejected
    }
}

fn has_reference(kv: &KeyValue) -> bool {
    kv.key_strindex != 0 || kv.value.as_ref().is_some_and(value_has_reference)
}

fn value_has_reference(v: &AnyValue) -> bool {
    match &v.value {
        Some(Value::StringValueStrindex(_)) => true,
        Some(Value::ArrayValue(a)) => a.values.iter().any(value_has_reference),
        Some(Value::KvlistValue(l)) => l.values.iter().any(has_reference),
        _ => false,
    }
}

fn table_string(strings: &[String], index: i32) -> String {
    usize::try_from(index)
        .ok()
        .and_then(|i| strings.get(i))
        .cloned()
        .unwrap_or_default()
}

fn resolve_key_value(kv: &KeyValue, strings: &[String]) -> KeyValue {
    KeyValue {
        // An inline key wins: the spec forbids setting both.
        key: if kv.key.is_empty() {
            table_string(strings, kv.key_strindex)
        } else {
            kv.key.clone()
        },
        value: kv.value.as_ref().map(|v| resolve_value(v, strings)),
        key_strindex: 0,
    }
}

fn resolve_value(v: &AnyValue, strings: &[String]) -> AnyValue {
    let value = match &v.value {
        Some(Value::StringValueStrindex(i)) => Some(Value::StringValue(table_string(strings, *i))),
        Some(Value::ArrayValue(a)) => Some(Value::ArrayValue(ArrayValue {
            values: a.values.iter().map(|x| resolve_value(x, strings)).collect(),
        })),
        Some(Value::KvlistValue(l)) => Some(Value::KvlistValue(KeyValueList {
            values: l.values.iter().map(|kv| resolve_key_value(kv, strings)).collect(),
        })),
        other => other.clone(),
    };
    AnyValue { value }
}

/// Whether every string-table reference in `attributes` (nested ones too) is in the table.
fn references_in_range(attributes: &[KeyValue], strings: usize) -> bool {
    fn value_ok(v: &AnyValue, strings: usize) -> bool {
        match &v.value {
            Some(Value::StringValueStrindex(i)) => in_range(*i, strings),
            Some(Value::ArrayValue(a)) => a.values.iter().all(|x| value_ok(x, strings)),
            Some(Value::KvlistValue(l)) => references_in_range(&l.values, strings),
            _ => true,
        }
    }
    attributes.iter().all(|kv| {
        in_range(kv.key_strindex, strings) && kv.value.as_ref().is_none_or(|v| value_ok(v, strings))
    })
}

fn in_range(index: i32, len: usize) -> bool {
    usize::try_from(index).is_ok_and(|i| i < len.max(1))
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// The first index in the dictionary that points outside its table.
fn dictionary_problem(d: &ProfilesDictionary) -> Option<String> {
    let strings = d.string_table.len();
    let attrs = d.attribute_table.len();
    let result = (|| -> Result<(), String> {
        for (i, m) in d.mapping_table.iter().enumerate() {
            check(in_range(m.filename_strindex, strings), || {
                format!("mapping {i}: filename index out of range")
            })?;
            check(m.attribute_indices.iter().all(|a| in_range(*a, attrs)), || {
                format!("mapping {i}: attribute index out of range")
            })?;
        }
        for (i, f) in d.function_table.iter().enumerate() {
            let ok = [f.name_strindex, f.system_name_strindex, f.filename_strindex]
                .iter()
                .all(|s| in_range(*s, strings));
            check(ok, || format!("function {i}: string index out of range"))?;
        }
        for (i, l) in d.location_table.iter().enumerate() {
            check(in_range(l.mapping_index, d.mapping_table.len()), || {
                format!("location {i}: mapping index out of range")
            })?;
            check(
                l.lines
                    .iter()
                    .all(|line| in_range(line.function_index, d.function_table.len())),
                || format!("location {i}: function index out of range"),
            )?;
            check(l.attribute_indices.iter().all(|a| in_range(*a, attrs)), || {
                format!("location {i}: attribute index out of range")
            })?;
        }
        for (i, s) in d.stack_table.iter().enumerate() {
            check(
                s.location_indices
                    .iter()
                    .all(|l| in_range(*l, d.location_table.len())),
                || format!("stack {i}: location index out of range"),
            )?;
        }
        for (i, a) in d.attribute_table.iter().enumerate() {
            check(
                in_range(a.key_strindex, strings) && in_range(a.unit_strindex, strings),
                || format!("attribute {i}: string index out of range"),
            )?;
        }
        for (i, l) in d.link_table.iter().enumerate() {
            let ok = matches!(l.trace_id.len(), 0 | 16) && matches!(l.span_id.len(), 0 | 8);
            check(ok, || {
                format!("link {i}: trace_id must be 16 bytes and span_id 8 (or empty)")
            })?;
        }
        Ok(())
    })();
    result.err().map(|e| format!("dictionary {e}"))
}

fn profile_problem(p: &Profile, d: &ProfilesDictionary) -> Option<String> {
    let strings = d.string_table.len();
    let types = [p.sample_type, p.period_type].into_iter().flatten();
    if !types
        .into_iter()
        .all(|t| in_range(t.type_strindex, strings) && in_range(t.unit_strindex, strings))
    {
        return Some("profile sample or period type: string index out of range".into());
    }
    if !p
        .attribute_indices
        .iter()
        .all(|a| in_range(*a, d.attribute_table.len()))
    {
        return Some("profile attribute index out of range".into());
    }
    for (i, s) in p.samples.iter().enumerate() {
        let ok = in_range(s.stack_index, d.stack_table.len())
            && in_range(s.link_index, d.link_table.len())
            && s.attribute_indices
                .iter()
                .all(|a| in_range(*a, d.attribute_table.len()));
        if !ok {
            return Some(format!("sample {i}: index out of range"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::profiles::v1development::{Link, Sample, ScopeProfiles, Stack};

    use super::*;

    fn batch(samples: Vec<Sample>, links: usize) -> ProfilesBatch {
        ProfilesBatch::from_request(ExportProfilesServiceRequest {
            resource_profiles: vec![ResourceProfiles {
                scope_profiles: vec![ScopeProfiles {
                    profiles: vec![Profile {
                        samples,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dictionary: Some(ProfilesDictionary {
                string_table: vec![String::new()],
                stack_table: vec![
                    Stack::default(),
                    Stack {
                        location_indices: vec![],
                    },
                ],
                link_table: vec![Link::default(); links],
                ..Default::default()
            }),
        })
    }

    #[test]
    fn counts_samples_and_round_trips_protobuf() {
        let b = batch(
            vec![
                Sample {
                    stack_index: 1,
                    values: vec![10],
                    ..Default::default()
                };
                3
            ],
            1,
        );
        assert_eq!(b.sample_count(), 3);
        let again =
            ProfilesBatch::decode(&b.encode(Encoding::Protobuf), Encoding::Protobuf).expect("decodes");
        assert_eq!(again, b);
    }

    #[test]
    fn out_of_range_indices_remove_the_profile() {
        let mut b = batch(
            vec![Sample {
                stack_index: 7,
                ..Default::default()
            }],
            1,
        );
        let rejected = b.remove_invalid_profiles();
        assert_eq!((rejected.profiles, rejected.samples), (1, 1));
        assert!(rejected.reason.expect("a reason").contains("sample 0"));
        assert_eq!(b.sample_count(), 0);

        let mut ok = batch(
            vec![Sample {
                stack_index: 1,
                link_index: 0,
                ..Default::default()
            }],
            1,
        );
        assert_eq!(ok.remove_invalid_profiles(), ProfilesRejected::default());
        assert_eq!(ok.sample_count(), 1);
    }

    #[test]
    fn a_bad_link_in_the_dictionary_rejects_everything() {
        let mut b = batch(vec![Sample::default(); 2], 1);
        b.request
            .dictionary
            .as_mut()
            .expect("dict")
            .link_table
            .push(Link {
                trace_id: vec![1; 3],
                span_id: vec![],
            });
        let rejected = b.remove_invalid_profiles();
        assert_eq!((rejected.profiles, rejected.samples), (1, 2));
        assert!(b.is_empty());
    }

    fn kv_ref(key: i32, value: i32) -> KeyValue {
        KeyValue {
            key: String::new(),
            value: Some(AnyValue {
                value: Some(Value::StringValueStrindex(value)),
            }),
            key_strindex: key,
        }
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.into())),
            }),
            key_strindex: 0,
        }
    }

    #[test]
    fn attributes_by_reference_read_as_inline_ones() {
        let mut b = batch(vec![Sample::default()], 1);
        let strings = &mut b.request.dictionary.as_mut().expect("dict").string_table;
        strings.extend(["service.name", "shop", "tags", "a"].map(String::from));
        let nested = KeyValue {
            key: String::new(),
            value: Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        value: Some(AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue {
                                values: vec![AnyValue {
                                    value: Some(Value::StringValueStrindex(4)),
                                }],
                            })),
                        }),
                        ..kv_ref(4, 0)
                    }],
                })),
            }),
            key_strindex: 3,
        };
        let by_reference = vec![kv_ref(1, 2), kv("host.name", "h1"), nested];
        let resolved = b.resolved_attributes(&by_reference);
        assert!(matches!(resolved, Cow::Owned(_)));
        let mut want_nested = kv("tags", "");
        want_nested.value = Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    value: Some(AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(Value::StringValue("a".into())),
                            }],
                        })),
                    }),
                    ..kv("a", "")
                }],
            })),
        });
        assert_eq!(
            resolved.as_ref(),
            &[kv("service.name", "shop"), kv("host.name", "h1"), want_nested]
        );

        let inline = vec![kv("service.name", "shop")];
        let same = b.resolved_attributes(&inline);
        assert!(
            matches!(same, Cow::Borrowed(_)),
            "inline attributes are not copied"
        );
        assert_eq!(same.as_ref(), &inline[..]);
    }

    #[test]
    fn a_resource_reference_outside_the_string_table_rejects_its_profiles() {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let mut b = batch(vec![Sample::default(); 2], 1);
        b.request
            .dictionary
            .as_mut()
            .expect("dict")
            .string_table
            .push("service.name".into());
        b.request.resource_profiles[0].resource = Some(Resource {
            attributes: vec![kv_ref(1, 9)],
            ..Default::default()
        });
        let rejected = b.remove_invalid_profiles();
        assert_eq!((rejected.profiles, rejected.samples), (1, 2));
        assert!(rejected.reason.expect("a reason").contains("resource attribute"));

        let mut ok = batch(vec![Sample::default(); 2], 1);
        ok.request
            .dictionary
            .as_mut()
            .expect("dict")
            .string_table
            .push("service.name".into());
        ok.request.resource_profiles[0].resource = Some(Resource {
            attributes: vec![kv_ref(1, 1)],
            ..Default::default()
        });
        assert_eq!(ok.remove_invalid_profiles(), ProfilesRejected::default());
    }
}
