//! The dataset's metadata files, each with one typed definition: `_job.json` (what a run
//! reads, checked by `--resume`), `_manifest.json` (what it did) and the `_SUCCESS` marker.
//! Written to a temporary name and renamed, like the parts.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::DatasetWriter;
use super::OutputError;
use crate::input::{Fingerprint, InputFile, ResolvedColumns};
use crate::record::{IdentityForm, RowStatus, StatusCounts};
use crate::storage::Location;

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// Name of the job file.
pub const JOB_FILE: &str = "_job.json";
/// Name of the success marker, written last.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// What a run reads and how: `--resume` continues only the same job over unchanged inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDescription {
    /// `hash`, `map` or `refresh`.
    pub command: String,
    /// Input paths as given.
    pub inputs: Vec<String>,
    /// Column choices.
    pub columns: serde_json::Value,
    /// Command-specific options that change the output (environment, state, key column…).
    pub options: serde_json::Value,
    /// Size, modification time and content hash of every input, in order (absent in jobs
    /// written before fingerprints existed, which then cannot be resumed safely).
    #[serde(default)]
    pub fingerprints: Vec<Fingerprint>,
}

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
    /// Client counters (requests, retries, latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<crate::client::ClientReport>,
    /// Most requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_in_flight: Option<usize>,
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
                            name: i.name.clone(),
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
            deduplicated: None,
            client: None,
            peak_in_flight: None,
            state: None,
            now: None,
            refresh: None,
            phones: (!writer.phone_totals.is_empty()).then(|| writer.phone_totals.clone()),
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
        if Manifest::read(&dir)?.status == RunState::Complete {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// What [`prepare_dir`] found in the output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// Empty or new: the run starts from the beginning.
    Fresh,
    /// `--resume` of an unfinished run of the same job: continue after its committed parts.
    Resume,
    /// `--resume` of a run that already finished (`_SUCCESS` present): nothing to do.
    Complete,
}

/// Names the first difference between two jobs' fingerprints, if any.
fn changed_input(previous: &JobDescription, job: &JobDescription) -> Option<(String, String)> {
    if previous.fingerprints.len() != job.fingerprints.len() {
        return Some((
            job.inputs.join(", "),
            "the previous run recorded no fingerprint of its inputs".to_string(),
        ));
    }
    previous
        .fingerprints
        .iter()
        .zip(&job.fingerprints)
        .zip(&job.inputs)
        .find_map(|((old, new), path)| old.differs(new).map(|why| (path.clone(), why)))
}

/// What differs between two jobs, for the error: the command, the inputs, or the names of the
/// column settings or options that differ (never their values: they are flags, but say it
/// the same way for all).
fn job_difference(previous: &JobDescription, job: &JobDescription) -> String {
    if previous.command != job.command {
        return format!("command ({} there, {} now)", previous.command, job.command);
    }
    if previous.inputs != job.inputs {
        return "inputs".to_string();
    }
    let differing = |a: &serde_json::Value, b: &serde_json::Value, what: &str| -> Option<String> {
        let empty = serde_json::Map::new();
        let (a, b) = (
            a.as_object().unwrap_or(&empty),
            b.as_object().unwrap_or(&empty),
        );
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        let names: Vec<String> = keys
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| match k.as_str() {
                "email" | "phone" | "email_hash" | "phone_hash" | "keep" => {
                    format!("--{}-col", k.replace('_', "-"))
                }
                _ => format!("--{}", k.replace('_', "-")),
            })
            .collect();
        (!names.is_empty()).then(|| format!("{what} ({})", names.join(", ")))
    };
    differing(&previous.columns, &job.columns, "column settings")
        .or_else(|| differing(&previous.options, &job.options, "options"))
        .unwrap_or_else(|| "options".to_string())
}

/// Whether two descriptions are the same job (inputs, columns, options; fingerprints apart).
fn same_job(previous: &JobDescription, job: &JobDescription) -> bool {
    previous.command == job.command
        && previous.inputs == job.inputs
        && previous.columns == job.columns
        && previous.options == job.options
}

/// Whether `dir` already holds this very job, finished (`_SUCCESS`) over unchanged inputs:
/// a `--resume` then has nothing to do, and a command can say so before it spends requests
/// (refresh's opt-out sweep). Reads only; the lock and [`prepare_dir`] decide for real.
///
/// # Errors
/// The directory cannot be read.
pub fn finished_same_job(dir: &Location, job: &JobDescription) -> Result<bool, OutputError> {
    if !dir.join(SUCCESS_FILE).exists()? {
        return Ok(false);
    }
    let Ok(text) = dir.join(JOB_FILE).read_all() else {
        return Ok(false);
    };
    let Ok(previous) = serde_json::from_slice::<JobDescription>(&text) else {
        return Ok(false);
    };
    Ok(same_job(&previous, job) && changed_input(&previous, job).is_none())
}

/// Prepares `dir` (already locked by the caller) for the run `job`: refuses a non-empty
/// directory unless `resume`, and on resume checks that it holds the same job over unchanged
/// inputs.
///
/// # Errors
/// [`OutputError::NotEmpty`], [`OutputError::CannotResume`], [`OutputError::InputChanged`],
/// or an I/O error.
pub fn prepare_dir(
    dir: &Location,
    job: &JobDescription,
    resume: bool,
) -> Result<DirState, OutputError> {
    if let Some(p) = dir.local_path() {
        if p.exists() && !p.is_dir() {
            return Err(OutputError::NotADirectory { path: dir.url() });
        }
    }
    dir.create_dir_all()?;
    // The lock, what a run killed before it wrote its job file leaves (a temporary file,
    // the refresh's scratch), and the job file of a run that committed nothing (refused by
    // the drop guard, a wrong secret, an unreachable operator) do not make a directory a run
    // to resume: the same command can simply be run again.
    let leftover = |name: &str| {
        name == super::lock::LOCK_FILE
            || name == ".refresh-tmp"
            || name == JOB_FILE
            || (name.starts_with('.') && name.ends_with(".tmp"))
    };
    let names = dir.list_names()?;
    let non_empty = names.iter().any(|name| !leftover(name));
    let shown = dir.url();
    if non_empty && !resume {
        return Err(OutputError::NotEmpty { path: shown });
    }
    if !non_empty {
        write_json(dir, JOB_FILE, job)?;
        return Ok(DirState::Fresh);
    }
    let text = dir
        .join(JOB_FILE)
        .read_all()
        .map_err(|_| OutputError::CannotResume {
            path: shown.clone(),
            why: format!("no {JOB_FILE}"),
        })?;
    let previous: JobDescription =
        serde_json::from_slice(&text).map_err(|e| OutputError::CannotResume {
            path: shown.clone(),
            why: format!("{JOB_FILE}: {e}"),
        })?;
    if !same_job(&previous, job) {
        return Err(OutputError::CannotResume {
            path: shown,
            why: format!(
                "it holds a run with other {} (rerun with the same flags, or without --resume into a new directory)",
                job_difference(&previous, job)
            ),
        });
    }
    if let Some((path, why)) = changed_input(&previous, job) {
        return Err(OutputError::InputChanged { path, why });
    }
    if dir.join(SUCCESS_FILE).exists()? {
        return Ok(DirState::Complete);
    }
    Ok(DirState::Resume)
}
