//! The committed parts of a dataset: their names, and what each covers ([`PartInfo`], kept
//! in its footer), which is where `--resume` continues and what the totals add up.

use super::OutputError;
use crate::input::Position;
use crate::record::{PhoneTally, RefreshMark, RefreshTally, RowStatus, StatusCounts};
use crate::storage::{Location, ParquetFile};

/// Footer metadata key under which each part records its [`PartInfo`].
pub(super) const PART_INFO_KEY: &str = "euid_map.part";

/// What a committed part covers, stored in its footer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number (the `NNNNN` of its name).
    pub part: u32,
    /// First input position covered.
    pub start: Position,
    /// Input position just after the last row covered.
    pub end: Position,
    /// Output rows in the part.
    pub rows: u64,
    /// Input rows covered.
    pub input_rows: u64,
    /// Output rows per status.
    pub counts: StatusCounts,
    /// `refresh`: output rows per decision ([`RefreshMark`]).
    pub refresh: RefreshTally,
    /// Raw phones by how they were read.
    pub phones: PhoneTally,
    /// Kept cells that were not UTF-8, written as null.
    pub unreadable_kept: u64,
}

/// [`PartInfo`] as each part's footer stores it (JSON, positions as `[file, row]`).
#[derive(serde::Serialize, serde::Deserialize)]
struct PartFooter {
    part: u32,
    start: (usize, u64),
    end: (usize, u64),
    rows: u64,
    input_rows: u64,
    counts: std::collections::BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    refresh: std::collections::BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "PhoneTally::is_empty")]
    phones: PhoneTally,
    #[serde(default, skip_serializing_if = "is_zero")]
    unreadable_kept: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PartInfo {
    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(&PartFooter {
            part: self.part,
            start: (self.start.file, self.start.row),
            end: (self.end.file, self.end.row),
            rows: self.rows,
            input_rows: self.input_rows,
            counts: super::counts_map(&self.counts),
            refresh: if self.refresh.is_empty() {
                Default::default()
            } else {
                RefreshMark::NAMES
                    .iter()
                    .zip(self.refresh.0)
                    .map(|((name, _), n)| (name.to_string(), n))
                    .collect()
            },
            phones: self.phones.clone(),
            unreadable_kept: self.unreadable_kept,
        })
        .expect("the footer always serializes")
    }

    fn from_json(s: &str) -> Option<PartInfo> {
        let f: PartFooter = serde_json::from_str(s).ok()?;
        let position = |(file, row)| Position { file, row };
        let mut counts = StatusCounts::default();
        for (k, n) in &f.counts {
            if let Some(st) = RowStatus::parse(k) {
                counts.0[st as usize] = *n;
            }
        }
        let mut refresh = RefreshTally::default();
        for (i, (name, _)) in RefreshMark::NAMES.iter().enumerate() {
            refresh.0[i] = f.refresh.get(*name).copied().unwrap_or(0);
        }
        Some(PartInfo {
            part: f.part,
            start: position(f.start),
            end: position(f.end),
            rows: f.rows,
            input_rows: f.input_rows,
            counts,
            refresh,
            phones: f.phones,
            unreadable_kept: f.unreadable_kept,
        })
    }
}

/// The file name of part `n`.
pub fn part_name(n: u32) -> String {
    format!("part-{n:05}.parquet")
}

/// Reads the footers of the committed parts in `dir`, in part order. Temporary files of an
/// interrupted local run are ignored (and later overwritten); an object store never shows an
/// uncommitted part.
///
/// # Errors
/// A part that cannot be read or lacks its metadata: the directory was not written by us.
pub fn committed_parts(dir: &Location) -> Result<Vec<PartInfo>, OutputError> {
    let mut parts = Vec::new();
    for name in dir.list_names()? {
        if !(name.starts_with("part-") && name.ends_with(".parquet")) {
            continue;
        }
        let path = dir.join(&name);
        let bad = |why: &str| OutputError::CannotResume {
            path: path.url(),
            why: why.to_string(),
        };
        let reader = ParquetFile::open(&path).map_err(|e| bad(&e))?;
        let info = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| {
                kv.iter()
                    .find(|k| k.key == PART_INFO_KEY)
                    .and_then(|k| k.value.clone())
            })
            .and_then(|v| PartInfo::from_json(&v))
            .ok_or_else(|| bad("part has no euid-map metadata"))?;
        parts.push(info);
    }
    parts.sort_by_key(|p| p.part);
    Ok(parts)
}
