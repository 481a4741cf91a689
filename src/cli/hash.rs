//! `euid-map hash`: normalize and hash offline into the dataset format `map` writes.

use clap::Args;

use super::common::{finish, handle_signals, with_metrics, JobArgs};

/// Arguments of `euid-map hash`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map hash customers.csv -o hashed/ --keep-col customer_id\n\nEnvironment: EUID_API_KEY, EUID_CLIENT_SECRET, EUID_CREDENTIALS_FILE (credentials); AWS_*, GOOGLE_*, AZURE_* (object storage); RUST_LOG, NO_COLOR (logs).\nExit codes: 0 done; 2 some identities failed (or stale) after retries, the output is complete; 1 fatal, no _SUCCESS; 64 usage error; 130/143 interrupted by SIGINT/SIGTERM (rerun with --resume)."
)]
pub(crate) struct HashArgs {
    #[command(flatten)]
    job: JobArgs,
}

/// Runs the command.
pub(super) fn run(a: HashArgs) -> anyhow::Result<u8> {
    with_metrics(&a.job.metrics, |run| {
        let job = a.job.to_config()?;
        handle_signals(&run)?;
        let summary = euid_map::pipeline::run_hash(&job, &run)?;
        Ok(finish(&summary, &job, ""))
    })
}
