//! `euid-map hash`: normalize and hash offline into the dataset format `map` writes.

use clap::Args;

use super::common::{finish, handle_signals, with_metrics, JobArgs};

/// Arguments of `euid-map hash`.
#[derive(Debug, Args)]
pub(crate) struct HashArgs {
    #[command(flatten)]
    job: JobArgs,
}

/// Runs the command.
pub(super) fn run(a: HashArgs) -> anyhow::Result<u8> {
    with_metrics(&a.job.metrics, |metrics| {
        let mut job = a.job.to_config()?;
        job.metrics = metrics;
        handle_signals(&job)?;
        let summary = euid_map::pipeline::run_hash(&job)?;
        Ok(finish(&summary, &job, ""))
    })
}
