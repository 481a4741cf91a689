//! `euid-map optout`: the opt-out status of datasets holding only raw EUIDs.

use clap::Args;

use super::client_args::ClientArgs;
use super::common::{finish, handle_signals, with_metrics, JobArgs};
use euid_map::pipeline::OptoutConfig;

/// Arguments of `euid-map optout`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map optout activation.parquet -o out/optout-2026-12-01 --id-col raw_euid --env prod\n  euid-map optout s3://cleanroom/audience/ -o s3://cleanroom/optout/2026-12-01 --id-col uid --keep-col segment --profile prod\n\nEach row: its raw EUID exactly as stored, status active / optout / invalid (empty, or not standard base64; never re-encoded), opted_out_since. One /v2/optout/status request per 5,000 distinct ids, one at a time.\n\nEnvironment: EUID_API_KEY, EUID_CLIENT_SECRET, EUID_CREDENTIALS_FILE (credentials); AWS_*, GOOGLE_*, AZURE_* (object storage).\nExit codes: 0 done; 1 fatal, no _SUCCESS; 64 usage error; 130/143 interrupted (rerun with --resume)."
)]
pub(crate) struct OptoutArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The column holding raw EUIDs (written as `raw_euid`).
    #[arg(long, value_name = "NAME", help_heading = "Input and output")]
    id_col: String,
    #[command(flatten)]
    client: ClientArgs,
    /// /v2/optout/status requests in flight. The endpoint's documentation asks for one at
    /// a time; more only against a private operator.
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = "Tuning")]
    optout_concurrency: usize,
}

/// Runs the command.
pub(super) fn run(a: OptoutArgs) -> anyhow::Result<u8> {
    with_metrics(&a.job.metrics, |run| {
        let mut job = a.job.to_config()?;
        let c = &job.columns;
        if !(c.email.is_empty()
            && c.phone.is_empty()
            && c.email_hash.is_empty()
            && c.phone_hash.is_empty())
        {
            super::usage!("optout reads raw EUIDs from --id-col; --email-col, --phone-col and the hash columns do not apply");
        }
        job.columns.no_identity = true;
        job.columns.keep.retain(|k| *k != a.id_col);
        job.columns.keep.insert(0, a.id_col.clone());
        let (target, source) = a.client.job_target(&run.metrics)?;
        let cfg = OptoutConfig {
            job,
            mapping: super::common::client_settings(target),
            id_col: a.id_col.clone(),
            concurrency: a
                .optout_concurrency
                .clamp(1, euid_map::client::MAX_CONCURRENCY),
        };
        handle_signals(&run)?;
        let summary =
            super::common::name_credentials(euid_map::pipeline::run_optout(&cfg, &run), &source)?;
        Ok(finish(&summary, &cfg.job, ""))
    })
}
