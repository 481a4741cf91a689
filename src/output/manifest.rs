//! `_job.json` (what a run reads, for `--resume`) and `_manifest.json` (what it did), and the
//! `_SUCCESS` marker. Written to a temporary name and renamed, like the parts.

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::writer::sync_dir;
use super::{io_err, OutputError};

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// Name of the job file.
pub const JOB_FILE: &str = "_job.json";
/// Name of the success marker, written last.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// The manifest: a JSON object assembled by the command that ran.
#[derive(Debug, Clone)]
pub struct Manifest(pub Value);

/// Writes `value` as pretty JSON to `dir/name` atomically.
///
/// # Errors
/// Writing, syncing or renaming failed.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> Result<(), OutputError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let text = serde_json::to_string_pretty(value).expect("a JSON value always serializes");
    fs::write(&tmp, text + "\n").map_err(io_err(&tmp))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&tmp))?;
    let dest = dir.join(name);
    fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    sync_dir(dir)
}

impl Manifest {
    /// Writes the manifest, then the empty `_SUCCESS` marker.
    ///
    /// # Errors
    /// Writing either file failed.
    pub fn publish(&self, dir: &Path) -> Result<(), OutputError> {
        write_json(dir, MANIFEST_FILE, &self.0)?;
        let ok = dir.join(SUCCESS_FILE);
        fs::write(&ok, b"").map_err(io_err(&ok))?;
        sync_dir(dir)
    }
}

/// Prepares `dir` for a run described by `job`: creates it, refuses a non-empty directory
/// unless `resume`, and on resume checks that it holds the same job.
///
/// # Errors
/// [`OutputError::NotEmpty`], [`OutputError::CannotResume`], or an I/O error.
pub fn prepare_dir(dir: &Path, job: &Value, resume: bool) -> Result<(), OutputError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let non_empty = fs::read_dir(dir).map_err(io_err(dir))?.next().is_some();
    let shown = dir.display().to_string();
    if non_empty && !resume {
        return Err(OutputError::NotEmpty { path: shown });
    }
    if non_empty {
        let text =
            fs::read_to_string(dir.join(JOB_FILE)).map_err(|_| OutputError::CannotResume {
                path: shown.clone(),
                why: format!("no {JOB_FILE}"),
            })?;
        let previous: Value =
            serde_json::from_str(&text).map_err(|e| OutputError::CannotResume {
                path: shown.clone(),
                why: format!("{JOB_FILE}: {e}"),
            })?;
        if &previous != job {
            return Err(OutputError::CannotResume {
                path: shown,
                why: "it holds a run with other inputs or options".to_string(),
            });
        }
        let _ = fs::remove_file(dir.join(super::SUCCESS_FILE));
        return Ok(());
    }
    write_json(dir, JOB_FILE, job)
}
