//! The end of a dataset command: the summary table, the lines for the person running it, and
//! the exit code (2 while identities are `failed` or `stale`, on a `--resume` of a finished
//! run too).

use euid_map::config::JobConfig;
use euid_map::pipeline::Summary;
use euid_map::record::RowStatus;

/// How a dataset job ended: its exit code, and whether this run wrote `_SUCCESS` (a
/// `--resume` of a complete run did not: it must not look like a fresh success).
pub(super) struct Ended {
    pub(super) code: u8,
    pub(super) wrote_success: bool,
}

/// Prints the end-of-run table to stderr (stdout stays free for pipes).
pub(super) fn print_summary(s: &Summary, out_dir: &euid_map::storage::Location, quiet: bool) {
    if quiet {
        return;
    }
    if super::logging::json() {
        tracing::info!(
            input_rows = s.input_rows,
            elapsed_s = s.elapsed_s,
            mapped = s.counts.get(RowStatus::Mapped),
            optout = s.counts.get(RowStatus::Optout),
            invalid = s.counts.get(RowStatus::Invalid),
            missing = s.counts.get(RowStatus::Missing),
            unmapped = s.counts.get(RowStatus::Unmapped),
            failed = s.counts.get(RowStatus::Failed),
            stale = s.counts.get(RowStatus::Stale),
            hashed = s.counts.get(RowStatus::Hashed),
            output = %out_dir,
            "run finished"
        );
        return;
    }
    let mut t = String::new();
    t.push_str(&format!("\n{:<10} {:>12}\n", "status", "identities"));
    for st in RowStatus::ALL {
        let n = s.counts.get(st);
        if n > 0 {
            t.push_str(&format!("{:<10} {:>12}\n", st.as_str(), n));
        }
    }
    t.push_str(&format!("{:<10} {:>12}\n", "total", s.counts.total()));
    let rate = if s.elapsed_s > 0.0 {
        s.input_rows as f64 / s.elapsed_s
    } else {
        0.0
    };
    t.push_str(&format!(
        "{} input rows in {:.2} s ({:.0} rows/s) → {}\n",
        s.input_rows, s.elapsed_s, rate, out_dir
    ));
    eprint!("{t}");
}

/// A line for the person running the job: on stderr, or as a log event with JSON logs.
pub(super) fn tell(message: &str) {
    if super::logging::json() {
        tracing::warn!("{message}");
    } else {
        eprintln!("{message}");
    }
}

/// Prints the summary and turns it into the exit code: 2 when identities failed.
///
/// A `--resume` of a run already complete sends nothing, but its exit code is still the
/// run's: 2 while it holds `failed` or `stale` identities, so that a retry by a scheduler
/// (Airflow `retries`, a CronJob's `backoffLimit`) never turns a failure into a success.
pub(super) fn finish(s: &Summary, job: &JobConfig, retry_hint: &str) -> Ended {
    if s.already_complete {
        let (failed, stale) = (
            s.counts.get(RowStatus::Failed),
            s.counts.get(RowStatus::Stale),
        );
        let done = format!(
            "{} already holds a complete run (finished {})",
            job.out_dir, s.manifest.finished_at
        );
        if failed + stale == 0 {
            tell(&format!("{done}; nothing to do"));
            return Ended {
                code: super::exit::OK,
                wrote_success: false,
            };
        }
        tell(&format!(
            "{done} with {failed} failed and {stale} stale identities: running it again changes nothing. To map them again: euid-map refresh --state {} -o NEW_DIR (it remaps failed and stale identities and carries every other one)",
            job.out_dir
        ));
        return Ended {
            code: super::exit::SOME_FAILED,
            wrote_success: false,
        };
    }
    Ended {
        code: exit_code(s, job, retry_hint),
        wrote_success: true,
    }
}

fn exit_code(s: &Summary, job: &JobConfig, retry_hint: &str) -> u8 {
    print_summary(s, &job.out_dir, job.quiet);
    let failed = s.counts.get(RowStatus::Failed);
    let stale = s.counts.get(RowStatus::Stale);
    if failed > 0 {
        tell(&format!(
            "{failed} identities failed after retries (status \"failed\"); {retry_hint}"
        ));
    }
    if stale > 0 {
        tell(&format!(
            "{stale} due identities could not be remapped and keep their last known raw EUID (status \"stale\"); {retry_hint}"
        ));
    }
    if failed + stale > 0 {
        return super::exit::SOME_FAILED;
    }
    super::exit::OK
}
