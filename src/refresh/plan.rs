//! What refresh does with each identity ([`Plan`]: carried, due, changed, new, or nothing
//! to map), and how the plan and the answer settle into the row's outcome and marks
//! ([`settle`]) once the mapper has it. One definition for both modes: the export join
//! spills `Plan<MapOutcome>` (its carried answer with it), a chunk's plans carry `()`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::output::{DatasetWriter, RefreshCounts};
use crate::record::{IdentityChunk, MapOutcome, RefreshMark};

/// What happens to one identity of the new dataset. `C` is what a carried identity
/// carries: the state's answer in the join's spill files ([`Decision`]), nothing beside a
/// chunk, whose `outcomes` hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Plan<C = ()> {
    /// Written with the previous answer.
    Carried(C),
    /// Remapped because it was due; the last known answer with a raw id, if any (boxed: a
    /// plan travels beside every identity of a chunk, most of them carried, and an inline
    /// answer made each plan about 100 bytes, 6 MiB a chunk).
    Due(Option<Box<MapOutcome>>),
    /// Remapped because the customer's value changed; the previous raw id.
    Changed(Option<Arc<str>>),
    /// Mapped for the first time.
    New,
    /// Invalid or missing: nothing to map.
    Local,
}

/// The join's decision for one identity of the export: a [`Plan`] carrying the state's
/// answer.
pub(crate) type Decision = Plan<MapOutcome>;

impl Decision {
    /// The plan beside the chunk, and the answer for the chunk's outcome slot.
    pub(crate) fn split(self) -> (Plan, Option<MapOutcome>) {
        match self {
            Plan::Carried(o) => (Plan::Carried(()), Some(o)),
            Plan::Due(last) => (Plan::Due(last), None),
            Plan::Changed(old) => (Plan::Changed(old), None),
            Plan::New => (Plan::New, None),
            Plan::Local => (Plan::Local, None),
        }
    }

    /// The raw EUID the state held for this identity (carried or due), if any.
    pub(crate) fn raw_id(&self) -> Option<Arc<str>> {
        match self {
            Plan::Carried(o) => o.raw_id_arc(),
            Plan::Due(Some(o)) => o.raw_id_arc(),
            _ => None,
        }
    }
}

/// Decides each identity's [`RefreshMark`] once its answer is known, turns a due identity
/// whose remap failed into `stale` with its last known answer, and a carried raw EUID the
/// opt-out sweep found opted out into `optout`.
pub(crate) fn settle(plans: Vec<Plan>, r: &mut IdentityChunk, opted_out: &HashMap<String, i64>) {
    let outcomes = r.outcomes.get_or_insert_with(|| vec![None; r.ids.len()]);
    let mut marks = Vec::with_capacity(plans.len());
    for (i, plan) in plans.into_iter().enumerate() {
        let slot = &mut outcomes[i];
        let (mark, old) = match plan {
            Plan::Carried(()) => {
                let swept = match &*slot {
                    Some(MapOutcome::Mapped {
                        raw_euid,
                        mapped_at,
                        ..
                    }) => opted_out
                        .get(raw_euid.as_str())
                        .map(|since| (*mapped_at, *since)),
                    _ => None,
                };
                if let Some((mapped_at, since)) = swept {
                    *slot = Some(MapOutcome::Optout {
                        mapped_at,
                        since: Some(since),
                    });
                    marks.push(RefreshMark::CARRIED.with(RefreshMark::SWEPT_OPTOUT));
                    continue;
                }
                (RefreshMark::CARRIED, None)
            }
            Plan::Local => (RefreshMark::default(), None),
            Plan::New => (RefreshMark::NEW, None),
            Plan::Changed(old) => (RefreshMark::VALUE_CHANGED, old),
            Plan::Due(last) => {
                let failed = match slot {
                    None => Some(Arc::from(crate::record::NO_ANSWER)),
                    Some(MapOutcome::Failed(why)) => Some(Arc::clone(why)),
                    Some(_) => None,
                };
                let old = last.as_deref().and_then(MapOutcome::raw_id_arc);
                let last_opted_out = match last.as_deref() {
                    Some(MapOutcome::Mapped {
                        raw_euid,
                        mapped_at,
                        ..
                    }) => opted_out
                        .get(raw_euid.as_str())
                        .map(|since| (*mapped_at, *since)),
                    _ => None,
                };
                match (failed, last) {
                    // The remap failed, but the sweep says the last known id opted out:
                    // never keep it.
                    (Some(_), Some(_)) if last_opted_out.is_some() => {
                        let (mapped_at, since) = last_opted_out.expect("checked");
                        *slot = Some(MapOutcome::Optout {
                            mapped_at,
                            since: Some(since),
                        });
                        marks.push(RefreshMark::DUE.with(RefreshMark::SWEPT_OPTOUT));
                        continue;
                    }
                    (Some(why), Some(last)) => {
                        *slot = Some(MapOutcome::Stale {
                            last,
                            why: Arc::from(format!(
                                "refresh failed, last known raw EUID kept: {why}"
                            )),
                        });
                        marks.push(RefreshMark::DUE.with(RefreshMark::STALE));
                        continue;
                    }
                    _ => (RefreshMark::DUE, old),
                }
            }
        };
        let mark = match (&old, &*slot) {
            (Some(o), Some(MapOutcome::Mapped { raw_euid, .. })) if **o != **raw_euid => {
                mark.with(RefreshMark::CHANGED_ID)
            }
            (Some(_), Some(MapOutcome::Optout { .. })) => mark.with(RefreshMark::NEWLY_OPTED_OUT),
            _ => mark,
        };
        marks.push(mark);
    }
    r.marks = Some(marks);
}

/// Counts of the join, for the manifest (whole-run: the join runs in full on every
/// invocation, `--resume` included).
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    /// The opt-out sweep (this invocation), when it ran.
    pub(crate) sweep: Option<(u64, u64, u64)>,
    pub(crate) dropped: u64,
    pub(crate) state_customers: u64,
    pub(crate) missing_customers: u64,
    pub(crate) lost_ids: u64,
    pub(crate) state_null_key_rows: u64,
    pub(crate) export_null_key_identities: u64,
}

impl Tally {
    /// The manifest's counts: the decisions of every part (`writer`), the join's counts,
    /// and this invocation's requests.
    pub(crate) fn counts(&self, writer: &DatasetWriter, requests: u64) -> RefreshCounts {
        let t = &writer.refresh_totals;
        let (due, value_changed, new) = (t.get("due"), t.get("value_changed"), t.get("new"));
        RefreshCounts {
            carried: t.get("carried"),
            due,
            value_changed,
            new,
            remapped: due + value_changed + new,
            changed_ids: t.get("changed_ids"),
            newly_opted_out: t.get("newly_opted_out"),
            stale: t.get("stale"),
            optout_sweep: self.sweep.is_some(),
            optout_checked: self.sweep.map_or(0, |s| s.0),
            optout_found: self.sweep.map_or(0, |s| s.1),
            optout_requests: self.sweep.map_or(0, |s| s.2),
            optout_swept: t.get("optout_swept"),
            dropped: self.dropped,
            state_customers: self.state_customers,
            missing_customers: self.missing_customers,
            lost_ids: self.lost_ids,
            state_null_key_rows: self.state_null_key_rows,
            export_null_key_identities: self.export_null_key_identities,
            requests,
        }
    }
}

pub(crate) type Plans = Vec<Plan>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Hashed, Identity, IdentityKind, RawId};

    /// A plan travels beside each identity of every chunk in flight: it stays small.
    #[test]
    fn a_plan_is_small() {
        let size = std::mem::size_of::<Plan>();
        assert!(size <= 24, "{size} bytes");
    }

    fn chunk(outcomes: Vec<Option<MapOutcome>>) -> IdentityChunk {
        let n = outcomes.len();
        IdentityChunk {
            file: 0,
            first_row: 0,
            len: n,
            per_row: 1,
            kept: Vec::new(),
            ids: (0..n)
                .map(|i| Identity {
                    kind: IdentityKind::Email,
                    hashed: Hashed::Ok(crate::normalize::sha256(&[i as u8])),
                    phone_form: Default::default(),
                })
                .collect(),
            outcomes: Some(outcomes),
            origin: None,
            marks: None,
            slot_names: std::sync::Arc::from([]),
            bad_kept: Vec::new(),
        }
    }

    fn mapped(u: &str) -> MapOutcome {
        MapOutcome::Mapped {
            raw_euid: RawId::from(u),
            previous: None,
            refresh_from: Some(1),
            bucket_id: None,
            mapped_at: 7,
        }
    }

    /// A carried id the sweep found opted out becomes `optout`; a due one whose remap failed
    /// keeps its last id as `stale`, unless that id opted out: then it is `optout` too.
    #[test]
    fn settle_never_keeps_an_opted_out_raw_id() {
        let opted: HashMap<String, i64> = [("gone".to_string(), 99)].into();
        let mut r = chunk(vec![
            Some(mapped("gone")),
            Some(mapped("kept")),
            Some(MapOutcome::Failed(Arc::from("HTTP 503"))),
            Some(MapOutcome::Failed(Arc::from("HTTP 503"))),
        ]);
        let plans = vec![
            Plan::Carried(()),
            Plan::Carried(()),
            Plan::Due(Some(Box::new(mapped("gone")))),
            Plan::Due(Some(Box::new(mapped("old")))),
        ];
        settle(plans, &mut r, &opted);
        let out = r.outcomes.expect("outcomes");
        let optout = MapOutcome::Optout {
            mapped_at: 7,
            since: Some(99),
        };
        assert_eq!(out[0], Some(optout.clone()));
        assert_eq!(out[1], Some(mapped("kept")));
        assert_eq!(out[2], Some(optout), "never stale with an opted-out id");
        assert!(matches!(out[3], Some(MapOutcome::Stale { .. })));
        let marks = r.marks.expect("marks");
        assert!(marks[0].has(RefreshMark::SWEPT_OPTOUT) && marks[2].has(RefreshMark::SWEPT_OPTOUT));
        assert!(marks[3].has(RefreshMark::STALE));
    }
}
