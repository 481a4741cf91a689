//! What a run is ([`JobDescription`], kept in `_job.json`), and how an output directory is
//! checked against it before anything is written: new, resumable, already complete, or
//! holding another job (and then what differs).

use serde::{Deserialize, Serialize};

use super::manifest::*;
use super::OutputError;
use crate::input::Fingerprint;
use crate::storage::Location;

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

/// What a run does with a directory holding a run that did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Continue it (`--resume`), or refuse.
    #[default]
    Never,
    /// Start over, its parts discarded (`--restart`).
    Always,
    /// Continue it, or start over when an input changed since it started
    /// (`--resume --restart-if-changed`: what a nightly job wants after a failed attempt).
    IfChanged,
}

/// Removes what an unfinished run left in `dir`, but for the lock: parts, manifest, job
/// file, temporary files. Only names euid-map writes are touched.
fn discard_run(dir: &Location) -> Result<(), OutputError> {
    for name in dir.list_names()? {
        let ours = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .is_some_and(|n| n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()))
            || name == JOB_FILE
            || name == super::MANIFEST_FILE
            || name == ".refresh-tmp"
            || (name.starts_with('.') && name.ends_with(".tmp"));
        if !ours {
            continue;
        }
        let entry = dir.join(&name);
        match entry.local_path() {
            // A scratch folder a killed run left (`.dedupe.tmp`, `.refresh-tmp`).
            Some(p) if p.is_dir() => {
                std::fs::remove_dir_all(p).map_err(|source| OutputError::Io {
                    path: entry.url(),
                    source,
                })?
            }
            _ => entry.delete()?,
        }
    }
    Ok(())
}

/// Prepares `dir` (already locked by the caller) for the run `job`: refuses a non-empty
/// directory unless `resume` or a restart, on resume checks that it holds the same job over
/// unchanged inputs, and on a restart discards an unfinished run (never a finished one).
///
/// # Errors
/// [`OutputError::NotEmpty`], [`OutputError::CannotResume`], [`OutputError::InputChanged`],
/// [`OutputError::RestartFinished`], or an I/O error.
pub fn prepare_dir(
    dir: &Location,
    job: &JobDescription,
    resume: bool,
    restart: Restart,
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
    if non_empty && restart == Restart::Always {
        if names.iter().any(|n| n == SUCCESS_FILE) {
            return Err(OutputError::RestartFinished { path: shown });
        }
        if !names.iter().any(|n| n == JOB_FILE) {
            // Not a run of ours: nothing in it is ours to discard.
            return Err(OutputError::NotEmpty { path: shown });
        }
        tracing::warn!(output = %shown, "--restart: discarding the parts of the run that did not finish, and starting over");
        discard_run(dir)?;
        write_json(dir, JOB_FILE, job)?;
        return Ok(DirState::Fresh);
    }
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
        if dir.join(SUCCESS_FILE).exists()? {
            // The night finished with the input as it was: run again, it is done (a second
            // cron fire, a cleared Airflow task); a new run of the new input needs another
            // directory.
            if restart == Restart::IfChanged {
                tracing::warn!(output = %shown, input = %path, "{why} since the run in this directory finished: it holds the earlier version's dataset and is left as it is (map the new version into another directory)");
                return Ok(DirState::Complete);
            }
            return Err(OutputError::FinishedWithOtherInput {
                path,
                why,
                dir: shown,
            });
        }
        if restart == Restart::IfChanged {
            tracing::warn!(output = %shown, input = %path, "{why} since the run in this directory started: discarding its parts and starting over (--restart-if-changed)");
            discard_run(dir)?;
            write_json(dir, JOB_FILE, job)?;
            return Ok(DirState::Fresh);
        }
        return Err(OutputError::InputChanged { path, why });
    }
    if dir.join(SUCCESS_FILE).exists()? {
        return Ok(DirState::Complete);
    }
    Ok(DirState::Resume)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobDescription {
        JobDescription {
            command: "map".into(),
            inputs: vec!["in.csv".into()],
            columns: serde_json::json!({}),
            options: serde_json::json!({}),
            fingerprints: Vec::new(),
        }
    }

    /// Issue #33.2: `--restart` discards what an unfinished run of ours left, scratch folders
    /// included, and nothing else; it refuses a finished run and a directory that is not a
    /// run of ours.
    #[test]
    fn a_restart_discards_an_unfinished_run_and_nothing_else() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Location::Local(tmp.path().to_path_buf());
        let p = |n: &str| tmp.path().join(n);
        std::fs::write(p("notes.txt"), "mine").expect("write");
        assert!(matches!(
            prepare_dir(&dir, &job(), false, Restart::Always),
            Err(OutputError::NotEmpty { .. })
        ));
        write_json(&dir, JOB_FILE, &job()).expect("job file");
        std::fs::write(p("part-00000.parquet"), "x").expect("write");
        std::fs::write(p(".part-00001.parquet.tmp"), "x").expect("write");
        std::fs::create_dir(p(".dedupe.tmp")).expect("mkdir");
        std::fs::write(p(".dedupe.tmp/i-00000.bin"), "hashes").expect("write");
        let state = prepare_dir(&dir, &job(), false, Restart::Always).expect("restarted");
        assert_eq!(state, DirState::Fresh);
        for gone in [
            "part-00000.parquet",
            ".part-00001.parquet.tmp",
            ".dedupe.tmp",
        ] {
            assert!(!p(gone).exists(), "{gone} discarded");
        }
        assert!(p("notes.txt").exists(), "not ours: kept");
        std::fs::write(p("part-00000-abc.snappy.parquet"), "spark").expect("write");
        prepare_dir(&dir, &job(), false, Restart::Always).expect("restarted again");
        assert!(
            p("part-00000-abc.snappy.parquet").exists(),
            "not named as ours: kept"
        );
        assert!(p(JOB_FILE).exists(), "the new run's job file");
        std::fs::write(p(SUCCESS_FILE), "").expect("write");
        assert!(matches!(
            prepare_dir(&dir, &job(), false, Restart::Always),
            Err(OutputError::RestartFinished { .. })
        ));
    }
}
