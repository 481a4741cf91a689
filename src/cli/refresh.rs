//! `euid-map refresh`: the nightly incremental job.

use anyhow::Context;
use clap::Args;

use super::client_args::ClientArgs;
use super::common::{finish, handle_signals, with_metrics, JobArgs, Tuning};
use euid_map::refresh::RefreshConfig;

/// Arguments of `euid-map refresh`.
///
/// v3 (`/v3/identity/map`) is the only API: public EUID deprecated the v2 endpoints on
/// 30 September 2026, and v3's per-identity refresh time (`r`) is what tells which rows are due.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map refresh --state out/2026-11-30 -o out/2026-12-01 --env prod\n  euid-map refresh --state \"$(euid-map latest out --before 2026-12-01)\" -o out/2026-12-01 customers.csv --key-col customer_id --resume\n\nEnvironment: EUID_API_KEY, EUID_CLIENT_SECRET, EUID_CREDENTIALS_FILE (credentials); AWS_*, GOOGLE_*, AZURE_* (object storage); RUST_LOG, NO_COLOR (logs).\nExit codes: 0 done; 2 some identities failed (or stale) after retries, the output is complete; 1 fatal, no _SUCCESS; 64 usage error; 130/143 interrupted by SIGINT/SIGTERM (rerun with --resume)."
)]
pub(crate) struct RefreshArgs {
    /// The previous run's output directory or object-store prefix (of map or refresh).
    #[arg(long, help_heading = "Refresh", value_name = "PREV_DIR")]
    state: String,
    #[command(flatten)]
    job: JobArgs,
    /// Column identifying a customer in the state and today's INPUT (required with INPUT).
    #[arg(long, help_heading = "Refresh", value_name = "NAME")]
    key_col: Option<String>,
    /// Keep customers that are gone from today's INPUT (default: drop them).
    #[arg(long, help_heading = "Refresh")]
    keep_missing: bool,
    /// The time that decides what is due (RFC 3339; default now).
    #[arg(long, help_heading = "Refresh", value_name = "RFC3339")]
    now: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    tuning: Tuning,
    /// Refuse (exit 1, no _SUCCESS) when today's export lacks more than this fraction of
    /// the state's customers: an empty or truncated export would otherwise wipe the state.
    /// 1 allows any drop. Ignored with --keep-missing, which drops nothing.
    #[arg(long, help_heading = "Refresh", default_value_t = euid_map::refresh::DEFAULT_MAX_DROP_FRACTION, value_name = "FRACTION")]
    max_drop_fraction: f64,
    /// Let the new dataset's kept columns differ from the state's (names or types). Without
    /// it, refresh keeps the state's columns and refuses a --keep-col set that would change
    /// them.
    #[arg(long, help_heading = "Refresh")]
    allow_schema_change: bool,
    /// Skip the opt-out sweep. By default every carried raw EUID is checked with
    /// /v2/optout/status (one request per 5,000, one at a time), so a person who opted out
    /// since their identity was mapped loses their raw EUID tonight: EUID asks to monitor
    /// opt-out status between remaps. Without the sweep an opt-out shows only when the
    /// identity is next due, up to a year later; skip it only if opt-outs are handled
    /// elsewhere.
    #[arg(long, help_heading = "Refresh")]
    no_optout_sweep: bool,
    /// /v2/optout/status requests in flight during the sweep. The endpoint's documentation
    /// asks for one at a time; more only against a private operator.
    #[arg(long, help_heading = "Refresh", default_value_t = 1, value_name = "N")]
    optout_concurrency: usize,
    /// State rows per partition when joining with today's export (memory ≈ 250 bytes each).
    #[arg(long, help_heading = "Refresh", default_value_t = euid_map::refresh::join::PARTITION_ROWS, hide = true)]
    partition_rows: u64,
}

/// Runs the command.
pub(super) fn run(a: RefreshArgs) -> anyhow::Result<u8> {
    with_metrics(&a.job.metrics, |run| {
        let job = a.job.to_config_any()?;
        let now_ms = match &a.now {
            Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--now {t:?} is not RFC 3339"))?
                .timestamp_millis(),
            None => chrono::Utc::now().timestamp_millis(),
        };
        if !(0.0..=1.0).contains(&a.max_drop_fraction) {
            super::usage!("--max-drop-fraction must be between 0 and 1");
        }
        let (target, source) = a.client.job_target(&run.metrics)?;
        let mapping = a.tuning.settings(target)?;
        let cfg = RefreshConfig {
            state: euid_map::storage::Location::parse(&a.state)?,
            job,
            key_col: a.key_col.clone(),
            keep_missing: a.keep_missing,
            now_ms,
            mapping,
            partition_rows: a.partition_rows,
            max_drop_fraction: a.max_drop_fraction,
            allow_schema_change: a.allow_schema_change,
            optout_sweep: !a.no_optout_sweep,
            optout_concurrency: a
                .optout_concurrency
                .clamp(1, euid_map::client::MAX_CONCURRENCY),
        };
        handle_signals(&run)?;
        let summary =
            super::common::name_credentials(euid_map::refresh::run_refresh(&cfg, &run), &source)?;
        if let (false, Some(r)) = (cfg.job.quiet, &summary.manifest.refresh) {
            super::common::tell(&format!(
                "refresh: carried {}, remapped {} (due {}, changed {}, new {}), changed ids {}, newly opted out {}, opted out by the sweep {}, stale {}, dropped {}",
                r.carried, r.remapped, r.due, r.value_changed, r.new, r.changed_ids, r.newly_opted_out, r.optout_swept, r.stale, r.dropped
            ));
        }
        Ok(finish(&summary, &cfg.job, "the next refresh retries them"))
    })
}
