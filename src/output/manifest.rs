//! The dataset's metadata files, each with one typed definition: `_job.json` (what a run
//! reads, checked by `--resume`), `_manifest.json` (what it did) and the `_SUCCESS` marker.
//! Written to a temporary name and renamed, like the parts.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::DatasetWriter;
use super::OutputError;
use crate::input::{InputFile, ResolvedColumns};
use crate::record::{IdentityForm, RowStatus, StatusCounts};
use crate::storage::Location;

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// Name of the job file.
pub const JOB_FILE: &str = "_job.json";
/// Name of the success marker, written last.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// An identity column of an input, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestColumn {
    /// Column name.
    pub name: String,
    /// `email` or `phone`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `raw` or `hashed`.
    pub form: String,
}

/// The version of the output dataset's schema, recorded in every manifest. It changes only
/// when a column is removed, renamed, retyped or changes meaning (README, "Output dataset":
/// columns and status values may be added without a change).
pub const SCHEMA_VERSION: u32 = 1;

/// One input of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestInput {
    /// The path as given.
    pub path: String,
    /// Its identity columns.
    pub identity_columns: Vec<ManifestColumn>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Every input row is in the dataset; `_SUCCESS` follows.
    Complete,
    /// Stopped by a signal after committing what was complete; `--resume` continues.
    Interrupted,
}

/// What `refresh` did, for its manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshCounts {
    /// Identities written with the state's answer.
    pub carried: u64,
    /// Identities remapped because their refresh time passed (or they had failed).
    pub due: u64,
    /// Identities remapped because the customer's value changed.
    pub value_changed: u64,
    /// Identities mapped for the first time.
    pub new: u64,
    /// `due + value_changed + new`.
    pub remapped: u64,
    /// Remapped identities whose raw EUID changed.
    pub changed_ids: u64,
    /// Remapped identities that are now opted out.
    pub newly_opted_out: u64,
    /// Due identities whose remap failed: written `stale`, with their last known raw EUID.
    #[serde(default)]
    pub stale: u64,
    /// Whether the opt-out sweep ran (`--no-optout-sweep` turns it off).
    #[serde(default)]
    pub optout_sweep: bool,
    /// Raw EUIDs the sweep sent to `/v2/optout/status` (last invocation).
    #[serde(default)]
    pub optout_checked: u64,
    /// Distinct raw EUIDs it found opted out (last invocation).
    #[serde(default)]
    pub optout_found: u64,
    /// Requests the sweep took (last invocation).
    #[serde(default)]
    pub optout_requests: u64,
    /// Carried identities written `optout` because the sweep found them opted out (whole
    /// dataset).
    #[serde(default)]
    pub optout_swept: u64,
    /// State rows not written: customers gone from today's export (without
    /// `--keep-missing`) and rows with a null key.
    pub dropped: u64,
    /// Distinct customers in the state (export mode).
    #[serde(default)]
    pub state_customers: u64,
    /// Of those, customers absent from today's export.
    #[serde(default)]
    pub missing_customers: u64,
    /// Mapped identities (with a raw EUID) of customers still in the export that the export
    /// no longer holds in a valid form: their raw EUID left the dataset (export mode).
    #[serde(default)]
    pub lost_ids: u64,
    /// State rows with a null key: they match no customer and are dropped (never kept,
    /// not even with `--keep-missing`).
    #[serde(default)]
    pub state_null_key_rows: u64,
    /// Export identities with a null key: mapped as new.
    #[serde(default)]
    pub export_null_key_identities: u64,
    /// Requests sent by the invocation that finished the run (the only count that is not
    /// over the whole dataset: a resumed run's earlier requests are not recorded).
    pub requests: u64,
}

/// `_manifest.json`: what a run did. One definition, written by `hash`, `map` and `refresh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `euid-map`.
    pub tool: String,
    /// The version of the dataset's schema ([`SCHEMA_VERSION`]; 0 for datasets written
    /// before it was recorded, which have the same columns as version 1).
    #[serde(default)]
    pub schema_version: u32,
    /// The tool's version.
    pub version: String,
    /// `hash`, `map` or `refresh`.
    pub command: String,
    /// Complete, or interrupted (then there is no `_SUCCESS`).
    pub status: RunState,
    /// The inputs and their identity columns.
    pub inputs: Vec<ManifestInput>,
    /// `--keep-col` columns.
    pub kept_columns: Vec<String>,
    /// Input rows covered by the committed parts.
    pub input_rows: u64,
    /// Output rows (one per identity cell).
    pub output_rows: u64,
    /// Output rows per status.
    pub counts: BTreeMap<String, u64>,
    /// Wall time of the invocation that wrote this manifest, seconds.
    pub elapsed_s: f64,
    /// Input rows per second of that invocation.
    pub rows_per_s: f64,
    /// When that invocation started (RFC 3339).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// `local`, `integ`, `prod` or `custom` (map and refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The API key's non-secret identifier (map and refresh), so that datasets can be
    /// traced to the key that produced them; never the key or the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The operator's base URL (map and refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Hashes sent to the operator, each repeat that was sent again counted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes_sent: Option<u64>,
    /// Distinct hashes sent, as far as the answer cache tells (a repeat whose answer had left
    /// it is sent, and counted, again); absent with `--dedupe-memory 0`, which sends every
    /// repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_hashes_sent: Option<u64>,
    /// Identities answered from the cache or an in-flight request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<u64>,
    /// `map`: how repeats were found: `exact` (each distinct identity sent once) or
    /// `window` (the answer cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<String>,
    /// `map --distinct`: the dataset is the lookup table (one row per distinct identity;
    /// `counts` and `input_rows` are the input's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<bool>,
    /// `map --dedupe exact`: the scratch folder's size at its peak, bytes (about).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_scratch_bytes: Option<u64>,
    /// `map --dedupe exact`: the units of its mapping pass (partitions of the scratch, and
    /// sub-partitions of those too big for the memory budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_units: Option<u64>,
    /// `map --dedupe exact`: the most distinct identities one unit held in memory (at most
    /// 200,000 whatever the input's size, unless `ulimit -n` leaves too little room to split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_peak_identities: Option<u64>,
    /// `map --dedupe exact`: identities sent during the first read (those a filter proved
    /// new); the rest of `hashes_sent` waited for the read to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_sent_early: Option<u64>,
    /// Client counters (requests, retries, latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<crate::client::ClientReport>,
    /// Most requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_in_flight: Option<usize>,
    /// `map --dedupe window`: about how many identities were sent more than once, their
    /// repeats further apart than the answer cache remembers (a sketch's estimate; 0 when
    /// within its error). `--dedupe exact` sends each once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_estimate: Option<u64>,
    /// `refresh`: the state dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `refresh`: the time that decided what was due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<String>,
    /// `refresh`: what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshCounts>,
    /// Raw phones by how they were read (whole dataset): taken as given (E.164), reformatted
    /// by libphonenumber's rules, refused per reason. Absent when no raw phone was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phones: Option<crate::record::PhoneTally>,
    /// Kept cells that were not UTF-8 and were written as null (whole dataset); absent when
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable_kept_cells: Option<u64>,
    /// `optout`: what it checked (this invocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optout: Option<OptoutCounts>,
}

/// What `euid-map optout` did, for its manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptoutCounts {
    /// Distinct raw EUIDs sent to `/v2/optout/status`.
    pub checked: u64,
    /// Of those, opted out.
    pub found: u64,
    /// Requests sent.
    pub requests: u64,
}

/// The `counts` object: every status, zeros included.
pub fn counts_map(c: &StatusCounts) -> BTreeMap<String, u64> {
    RowStatus::ALL
        .into_iter()
        .map(|s| (s.as_str().to_string(), c.get(s)))
        .collect()
}

/// Writes `value` as pretty JSON to `dir/name` atomically (local: temporary file, fsync,
/// rename; object store: one PUT).
///
/// # Errors
/// Writing failed.
pub fn write_json<T: Serialize>(dir: &Location, name: &str, value: &T) -> Result<(), OutputError> {
    let text = serde_json::to_string_pretty(value).expect("manifest types always serialize");
    Ok(dir.join(name).write_all((text + "\n").into_bytes())?)
}

impl Manifest {
    /// The manifest of a complete run of `command`, with the fields every command writes;
    /// `map` and `refresh` add theirs.
    pub fn new(
        inputs: &[InputFile],
        command: &str,
        writer: &DatasetWriter,
        columns: &[ResolvedColumns],
        started: Instant,
    ) -> Manifest {
        let elapsed = started.elapsed().as_secs_f64();
        let now = chrono::Utc::now();
        let form = |f: IdentityForm| match f {
            IdentityForm::Raw => "raw",
            IdentityForm::Hashed => "hashed",
        };
        Manifest {
            tool: "euid-map".to_string(),
            schema_version: SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            command: command.to_string(),
            status: RunState::Complete,
            inputs: inputs
                .iter()
                .zip(columns)
                .map(|(f, c)| ManifestInput {
                    path: f.given.clone(),
                    identity_columns: c
                        .identities
                        .iter()
                        .map(|i| ManifestColumn {
                            name: i.name.to_string(),
                            kind: i.kind.as_str().to_string(),
                            form: form(i.form).to_string(),
                        })
                        .collect(),
                })
                .collect(),
            kept_columns: writer.kept_columns(),
            input_rows: writer.input_rows,
            output_rows: writer.totals.total(),
            counts: counts_map(&writer.totals),
            elapsed_s: (elapsed * 1000.0).round() / 1000.0,
            rows_per_s: if elapsed > 0.0 {
                (writer.input_rows as f64 / elapsed).round()
            } else {
                0.0
            },
            started_at: (now - chrono::Duration::milliseconds((elapsed * 1000.0) as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            finished_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            environment: None,
            key_id: None,
            base_url: None,
            hashes_sent: None,
            unique_hashes_sent: None,
            dedupe: None,
            dedupe_scratch_bytes: None,
            dedupe_units: None,
            dedupe_peak_identities: None,
            dedupe_sent_early: None,
            distinct: None,
            deduplicated: None,
            client: None,
            peak_in_flight: None,
            resent_estimate: None,
            state: None,
            now: None,
            refresh: None,
            phones: (!writer.phone_totals.is_empty()).then(|| writer.phone_totals.clone()),
            unreadable_kept_cells: (writer.unreadable_kept > 0).then_some(writer.unreadable_kept),
            optout: None,
        }
    }

    /// Writes the manifest of a complete run, then the empty `_SUCCESS` marker.
    ///
    /// # Errors
    /// Writing either file failed.
    pub fn publish(&self, dir: &Location) -> Result<(), OutputError> {
        debug_assert_eq!(self.status, RunState::Complete);
        write_json(dir, MANIFEST_FILE, self)?;
        Ok(dir.join(SUCCESS_FILE).write_all(Vec::new())?)
    }

    /// Reads `dir/_manifest.json`.
    ///
    /// # Errors
    /// The file is missing or is not a manifest.
    pub fn read(dir: &Location) -> Result<Manifest, OutputError> {
        let path = dir.join(MANIFEST_FILE);
        let text = path.read_all()?;
        serde_json::from_slice(&text).map_err(|e| OutputError::CannotResume {
            path: path.url(),
            why: format!("not an euid-map manifest: {e}"),
        })
    }
}

/// The newest finished dataset directly under `root` (a directory or prefix of nightly
/// outputs such as `2026-11-27/`): the last name, in name order, that holds `_SUCCESS` and a
/// manifest marked complete, skipping names at or after `before`. A failed or interrupted
/// night (no `_SUCCESS`) is never chosen.
///
/// # Errors
/// `root` cannot be listed, or a night's `_SUCCESS` or manifest cannot be read (an error,
/// never taken for "not finished": that would silently pick an older night).
pub fn latest_complete(
    root: &Location,
    before: Option<&str>,
) -> Result<Option<Location>, OutputError> {
    // A local ROOT that does not exist is a typo or an unmounted volume, not a first
    // night: said as an error, never as "nothing finished" (which starts afresh).
    if let Some(p) = root.local_path() {
        if !p.is_dir() {
            return Err(OutputError::NoRoot { path: root.url() });
        }
    }
    let mut names: Vec<String> = root
        .list_names()?
        .into_iter()
        .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
        .filter(|n| before.is_none_or(|b| n.as_str() < b))
        .collect();
    names.sort();
    for n in names.iter().rev() {
        let dir = root.join(n);
        if !dir.join(SUCCESS_FILE).exists()? {
            continue;
        }
        let manifest = Manifest::read(&dir).map_err(|e| match e {
            OutputError::CannotResume { path, why } => OutputError::BadManifest { path, why },
            e => e,
        })?;
        if manifest.status == RunState::Complete {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}
