//! `euid-map refresh`: the nightly incremental job.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::common::{finish, JobArgs, Tuning};
use super::map::ClientArgs;
use crate::refresh::RefreshConfig;

/// Arguments of `euid-map refresh`.
///
/// v3 (`/v3/identity/map`) is the only API: public EUID deprecated the v2 endpoints on
/// 30 September 2026, and v3's per-identity refresh time (`r`) is what tells which rows are due.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The previous run's output directory (of map or refresh).
    #[arg(long, value_name = "PREV_DIR")]
    state: PathBuf,
    #[command(flatten)]
    job: JobArgs,
    /// Column identifying a customer in the state and today's INPUT (required with INPUT).
    #[arg(long, value_name = "NAME")]
    key_col: Option<String>,
    /// Keep customers that are gone from today's INPUT (default: drop them).
    #[arg(long)]
    keep_missing: bool,
    /// The time that decides what is due (RFC 3339; default now).
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    tuning: Tuning,
    /// State rows per partition when joining with today's export (memory ≈ 250 bytes each).
    #[arg(long, default_value_t = crate::refresh::join::PARTITION_ROWS, hide = true)]
    partition_rows: u64,
}

/// Runs the command.
pub(super) fn run(a: RefreshArgs) -> anyhow::Result<u8> {
    let job = a.job.to_config_any()?;
    let now_ms = match &a.now {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--now {t:?} is not RFC 3339"))?
            .timestamp_millis(),
        None => chrono::Utc::now().timestamp_millis(),
    };
    let mapping = a.tuning.settings(a.client.to_config()?)?;
    let cfg = RefreshConfig {
        state: a.state,
        job,
        key_col: a.key_col,
        keep_missing: a.keep_missing,
        now_ms,
        mapping,
        partition_rows: a.partition_rows,
    };
    let summary = crate::refresh::run_refresh(&cfg)?;
    if !cfg.job.quiet {
        eprintln!("refresh: {}", summary.manifest["refresh"]);
    }
    Ok(finish(&summary, &cfg.job, "the next refresh retries them"))
}
