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
    with_metrics(&a.job.metrics, |metrics| {
        let mut job = a.job.to_config()?;
        job.metrics = metrics;
        let target = a.client.to_config()?;
        target.remind_rotation(
            &job.metrics,
            euid_map::credentials::DEFAULT_MAX_KEY_AGE_DAYS,
        );
        let source = target.source.clone();
        let mapping = a.tuning.settings(target)?;
        let cfg = MapConfig { job, mapping };
        handle_signals(&cfg.job)?;
        let summary = super::common::name_credentials(euid_map::pipeline::run_map(&cfg), &source)?;
        Ok(finish(&summary, &cfg.job, "rerun them later"))
    })
}
