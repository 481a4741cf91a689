//! `euid-map map`: the bulk mapping job.

use clap::Args;

use super::client_args::ClientArgs;
use super::common::{finish, handle_signals, with_metrics, JobArgs, Tuning};
use euid_map::config::MapConfig;

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
}

/// Runs the command.
pub(super) fn run(a: MapArgs) -> anyhow::Result<u8> {
    with_metrics(&a.job.metrics, |run| {
        let job = a.job.to_config()?;
        let (target, source) = a.client.job_target(&run.metrics)?;
        let mapping = a.tuning.settings(target)?;
        let cfg = MapConfig { job, mapping };
        handle_signals(&run)?;
        let summary =
            super::common::name_credentials(euid_map::pipeline::run_map(&cfg, &run), &source)?;
        Ok(finish(&summary, &cfg.job, "rerun them later"))
    })
}
