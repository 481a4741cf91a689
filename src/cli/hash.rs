//! `euid-map hash`: normalize and hash offline into the dataset format `map` writes.

use clap::Args;

use super::common::{print_summary, JobArgs};

/// Arguments of `euid-map hash`.
#[derive(Debug, Args)]
pub struct HashArgs {
    #[command(flatten)]
    job: JobArgs,
}

/// Runs the command.
pub(super) fn run(a: HashArgs) -> anyhow::Result<u8> {
    let job = a.job.to_config()?;
    let summary = crate::pipeline::run_hash(&job)?;
    print_summary(&summary, &job.out_dir, job.quiet);
    Ok(0)
}
