//! `euid-map refresh`: the nightly incremental job.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::common::{print_summary, JobArgs};
use super::map::ClientArgs;
use crate::client::MAX_ITEMS_PER_REQUEST;
use crate::pipeline::MapSettings;
use crate::record::RowStatus;
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
    /// Identities per request (at most 5,000).
    #[arg(long, default_value_t = MAX_ITEMS_PER_REQUEST)]
    batch_size: usize,
    /// Answers remembered to deduplicate repeated identities.
    #[arg(long, default_value_t = 500_000)]
    dedupe_cache: usize,
}

/// Runs the command.
pub(super) fn run(a: RefreshArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        (1..=MAX_ITEMS_PER_REQUEST).contains(&a.batch_size),
        "--batch-size must be between 1 and {MAX_ITEMS_PER_REQUEST}"
    );
    let job = a.job.to_config_any()?;
    let now_ms = match &a.now {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--now {t:?} is not RFC 3339"))?
            .timestamp_millis(),
        None => chrono::Utc::now().timestamp_millis(),
    };
    let (client, env, embedded_operator) = a.client.to_config()?;
    let cfg = RefreshConfig {
        state: a.state,
        job,
        key_col: a.key_col,
        keep_missing: a.keep_missing,
        now_ms,
        mapping: MapSettings {
            client,
            env,
            embedded_operator,
            batch_size: a.batch_size,
            cache_entries: a.dedupe_cache,
        },
    };
    let summary = crate::refresh::run_refresh(&cfg)?;
    print_summary(&summary, &cfg.job.out_dir, cfg.job.quiet);
    if !cfg.job.quiet {
        eprintln!("refresh: {}", summary.manifest["refresh"]);
    }
    let failed = summary.counts.get(RowStatus::Failed);
    if failed > 0 {
        eprintln!("{failed} identities failed after retries (status \"failed\"); the next refresh retries them");
        return Ok(2);
    }
    Ok(0)
}
