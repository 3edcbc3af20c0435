use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::profiles::v1development::{Profile, ProfilesDictionary, ResourceProfiles};
use prost::Message;

use crate::{profiles_json, DecodeError, Encoding};

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
            Encoding::Json => profiles_json::decode(bytes)?,
        };
        Ok(Self::from_request(request))
    }

    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => self.request.encode_to_vec(),
            Encoding::Json => profiles_json::encode(&self.request),
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
        for rp in &mut self.request.resource_profiles {
            for sp in &mut rp.scope_profiles {
                sp.profiles.retain(|p| match profile_problem(p, dict) {
                    None => true,
                    Some(problem) => {
                        rejected.profiles += 1;
                        rejected.samples += p.samples.len();
                        rejected.reason.get_or_insert(problem);
                        false
                    }
                });
            }
        }
        self.samples -= rejected.samples;
        rejected
    }
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
}
