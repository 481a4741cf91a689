//! `euid-map map`: the bulk mapping job.

use clap::Args;

use super::client_args::ClientArgs;
use super::common::{finish, handle_signals, with_metrics, JobArgs, Tuning};
use euid_map::config::MapConfig;

/// Arguments of `euid-map map`.
#[derive(Debug, Args)]
pub(crate) struct MapArgs {
    #[command(flatten)]
    job: JobArgs,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    tuning: Tuning,
}

/// Runs the command.
pub(super) fn run(a: MapArgs) -> anyhow::Result<u8> {
    let job = a.job.to_config()?;
    let mapping = a.tuning.settings(a.client.to_config()?)?;
    let cfg = MapConfig { job, mapping };
    handle_signals(&cfg.job)?;
    with_metrics(&cfg.job, &a.job.metrics, || {
        let summary = euid_map::pipeline::run_map(&cfg)?;
        Ok(finish(&summary, &cfg.job, "rerun them later"))
    })
}
