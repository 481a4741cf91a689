//! `euid-map map`: the bulk mapping job.

use clap::Args;

use super::client_args::ClientArgs;
use super::common::{finish, handle_signals, with_metrics, JobArgs, Tuning};
use super::usage;
use euid_map::config::{DedupeMode, MapConfig};

/// Arguments of `euid-map map`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map map customers.csv -o out/2026-12-01 --env prod --keep-col customer_id\n  euid-map map s3://lake/exports/ -o s3://lake/euid/2026-12-01 --profile prod --resume\n  euid-map map fixtures/customers.csv -o out/demo --env local\n\nEnvironment: EUID_API_KEY, EUID_CLIENT_SECRET, EUID_CREDENTIALS_FILE (credentials); AWS_*, GOOGLE_*, AZURE_* (object storage); RUST_LOG, NO_COLOR (logs).\nExit codes: 0 done; 2 some identities failed (or stale) after retries, the output is complete; 1 fatal, no _SUCCESS; 64 usage error; 130/143 interrupted by SIGINT/SIGTERM (rerun with --resume)."
)]
pub(crate) struct MapArgs {
    #[command(flatten)]
    job: JobArgs,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    tuning: Tuning,
    #[command(flatten)]
    dedupe: DedupeArgs,
}

/// How repeats are found.
#[derive(Debug, Args)]
#[command(next_help_heading = "Tuning")]
struct DedupeArgs {
    /// How repeated identities are found. `exact`: each distinct identity is sent once per
    /// run, however far apart its repeats are (the input is read twice; identities first
    /// seen are sent during the first read; a private scratch folder holds about
    /// 160 bytes per identity until the run ends: beside a local output, or under --tmp-dir).
    /// `window`: one read, and a repeat is answered from --dedupe-memory's cache while its
    /// answer is remembered, sent again otherwise. `auto`
    /// runs `window` (and `exact` for --distinct): the manifest's `resent_estimate` says how
    /// many identities were sent more than once, and a warning names `exact` when they are
    /// many (a backfill whose repeats lie far apart). The manifest's `dedupe` says which ran
    #[arg(long, value_enum, default_value_t = Dedupe::Auto, value_name = "MODE")]
    dedupe: Dedupe,
    /// Where `--dedupe exact` keeps its scratch folder (default: inside a local output
    /// directory, the system's temporary directory for an object-store output). The folder
    /// is private (0700) and removed when the run ends, also after a failure; one a killed
    /// run left is removed by the next run on the same output
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<std::path::PathBuf>,
    /// Write the lookup table instead: one row per distinct valid identity (identity_type,
    /// identity_hash, status, reason, raw_euid, previous_raw_euid, refresh_from, mapped_at;
    /// no source, row or kept columns), to JOIN on identity_hash in the warehouse. Runs
    /// --dedupe exact; the manifest still counts the input's identities by status. The table
    /// is one part, committed when complete (--resume after an interruption starts it over)
    #[arg(long)]
    distinct: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Dedupe {
    Auto,
    Exact,
    Window,
}

impl From<Dedupe> for DedupeMode {
    fn from(d: Dedupe) -> Self {
        match d {
            Dedupe::Auto => DedupeMode::Auto,
            Dedupe::Exact => DedupeMode::Exact,
            Dedupe::Window => DedupeMode::Window,
        }
    }
}

impl MapArgs {
    /// Whether the run dedupes exactly (its joins of spilled partitions).
    pub(super) fn exact(&self) -> bool {
        DedupeMode::from(self.dedupe.dedupe).runs(self.dedupe.distinct) == DedupeMode::Exact
    }
}

/// Runs the command.
pub(super) fn run(a: MapArgs) -> anyhow::Result<u8> {
    with_metrics(&a.job.metrics, |run| {
        let job = a.job.to_config()?;
        let (target, source) = a.client.job_target(&run.metrics)?;
        let mut mapping = a.tuning.settings(target)?;
        mapping.dedupe = a.dedupe.dedupe.into();
        mapping.tmp_dir = a.dedupe.tmp_dir.clone();
        if a.dedupe.distinct {
            if matches!(a.dedupe.dedupe, Dedupe::Window) {
                usage!("--distinct writes each distinct identity once: it runs --dedupe exact, not window");
            }
            if mapping.client.api == euid_map::client::Api::V2 {
                usage!("--distinct writes the v3 lookup table: drop --api v2");
            }
            if !job.columns.keep.is_empty() {
                usage!("--distinct writes one row per distinct identity, with no input row to copy a column from: drop --keep-col (join the table back on identity_hash)");
            }
            mapping.distinct = true;
        }
        let cfg = MapConfig { job, mapping };
        handle_signals(&run)?;
        let summary =
            super::common::name_credentials(euid_map::pipeline::run_map(&cfg, &run), &source)?;
        let hint = format!(
            "euid-map refresh --state {} -o NEW_DIR maps them again (every other identity carried)",
            cfg.job.out_dir
        );
        Ok(finish(&summary, &cfg.job, &hint))
    })
}
