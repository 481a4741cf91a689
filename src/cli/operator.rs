//! `euid-map operator`: the local EUID operator emulator as a server.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use euid_map::operator::faults::FaultPlan;
use euid_map::operator::keys::Keys;
use euid_map::operator::model::RawIdFormat;
use euid_map::operator::{self, Config};
use euid_map::protocol::{DEMO_API_KEY, DEMO_CLIENT_SECRET};
use euid_map::secret::Secret;

/// Arguments of `euid-map operator`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map operator --listen 127.0.0.1:8080\n  euid-map operator --admin --faults 429=0.05,503=0.02 --rate-limit 50\n  curl -X POST 'http://127.0.0.1:8080/ops/advance?days=40'\n\nEnvironment: EUID_API_KEY, EUID_CLIENT_SECRET (the one client's key; else the demo key).\nExit codes: 0 stopped by Ctrl-C or SIGTERM; 1 cannot listen or bad keys; 64 usage error."
)]
pub(crate) struct OperatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// API key of the one mapper client.
    #[arg(
        long,
        env = "EUID_API_KEY",
        hide_env_values = true,
        requires = "client_secret",
        value_parser = super::common::parse_secret
    )]
    api_key: Option<Secret<String>>,
    /// Its client secret (base64 of 32 bytes); only with --api-key (a secret alone would be
    /// ignored for the demo keys).
    #[arg(long, env = "EUID_CLIENT_SECRET", hide_env_values = true, requires = "api_key", value_parser = super::common::parse_secret)]
    client_secret: Option<Secret<String>>,
    /// JSON file of clients: [{"key": "...", "secret": "...", "roles": ["MAPPER"]}].
    #[arg(long, value_name = "FILE", conflicts_with = "api_key")]
    keys: Option<PathBuf>,
    /// Seed for salts and fault draws: same seed, same raw ids.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Salt buckets.
    #[arg(long, default_value_t = operator::model::PROD_BUCKETS)]
    buckets: usize,
    /// Emit 33-byte prefixed raw ids (the operator's identity_v3 form) instead of 32-byte ones.
    #[arg(long)]
    prefixed_ids: bool,
    /// Simulated start time (RFC 3339); default now.
    #[arg(long, value_name = "RFC3339")]
    start_time: Option<String>,
    /// File of opted-out identity hashes (base64 SHA-256), one per line; re-read when it changes.
    #[arg(long, value_name = "FILE")]
    optout_file: Option<PathBuf>,
    /// Accepted request clock skew, seconds.
    #[arg(long, default_value_t = 60)]
    timestamp_window: u64,
    /// Enable POST /ops/advance?days=N (moves the simulated clock).
    #[arg(long)]
    admin: bool,
    /// Requests per second before bare 429s.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Retry-After seconds sent with 429s.
    #[arg(long)]
    retry_after: Option<u32>,
    /// Concurrent requests before 429s.
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Random faults: e.g. 429=0.05,500=0.02,503=0.02,reset=0.01,slow=0.01,text=0.05,nonce=0.01,shift=0.01
    /// (shift: one phone answer moved into the email array, a wrong positional answer)
    #[arg(long, default_value = "")]
    faults: String,
    /// Latency of a "slow" fault, milliseconds: the answer leaves this long after its request
    /// arrived, the emulator's own work included.
    #[arg(long, default_value_t = 2000)]
    slow_ms: u64,
    /// A v3 input value that makes its whole request fail with 400 (client testing).
    #[arg(long, hide = true)]
    poison: Option<String>,
    /// Answer 401 to every request after this many (credentials expiring mid-run).
    #[arg(long, hide = true)]
    expire_after: Option<u64>,
    /// Hold every request after this many until `POST /ops/release` (needs --admin): lets a
    /// test interrupt a run that is certainly mid-way. `POST /ops/hold?after=N` arms it at
    /// run time; the gauge `euid_emulator_held_requests` counts the requests waiting.
    #[arg(long, value_name = "N", requires = "admin")]
    hold_after: Option<u64>,
    /// Seconds the emulator's clock is off when it checks request timestamps (clock-skew
    /// tests).
    #[arg(long, hide = true, default_value_t = 0, allow_negative_numbers = true)]
    clock_offset_secs: i64,
}

/// Runs the server until Ctrl-C.
pub(super) fn run(a: OperatorArgs) -> anyhow::Result<u8> {
    let keys = match (&a.keys, &a.api_key, &a.client_secret) {
        (Some(path), _, _) => Keys::from_file(path)?,
        (None, Some(k), Some(s)) => Keys::single(k, s)?,
        _ => {
            eprintln!("no keys configured: using the demo credentials (local use only)");
            eprintln!("  EUID_API_KEY={DEMO_API_KEY}");
            eprintln!("  EUID_CLIENT_SECRET={DEMO_CLIENT_SECRET}");
            Keys::demo()
        }
    };
    let start_ms = match &a.start_time {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--start-time {t:?} is not RFC 3339"))?
            .timestamp_millis(),
        None => chrono::Utc::now().timestamp_millis(),
    };
    if let Some(p) = &a.optout_file {
        std::fs::metadata(p).with_context(|| format!("--optout-file {}", p.display()))?;
    }
    let config = Config {
        keys,
        seed: a.seed,
        buckets: a.buckets.max(1),
        raw_id: if a.prefixed_ids {
            RawIdFormat::V3Prefixed
        } else {
            RawIdFormat::V2
        },
        start_ms,
        optout: HashSet::new(),
        optout_file: a.optout_file.clone(),
        timestamp_window: Duration::from_secs(a.timestamp_window),
        admin: a.admin,
        rate_limit: a.rate_limit,
        retry_after_s: a.retry_after,
        max_in_flight: a.max_in_flight,
        faults: FaultPlan::parse(&a.faults, Duration::from_millis(a.slow_ms))?,
        poison: a.poison,
        expire_after: a.expire_after,
        hold_after: a.hold_after,
        clock_offset_ms: a.clock_offset_secs.saturating_mul(1000),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
        eprintln!("euid-map operator emulator listening on http://{}", listener.local_addr()?);
        eprintln!("it emulates the EUID wire protocol with synthetic salts: the ids it returns are NOT real EUIDs");
        operator::serve(listener, config, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(0)
}
