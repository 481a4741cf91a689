//! `euid-map map`: the bulk mapping job.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::common::{finish, handle_signals, JobArgs, Tuning};
use super::usage;
use euid_map::client::{ClientConfig, RetryPolicy, MAX_CONCURRENCY};
use euid_map::config::{MapConfig, Secret};
use euid_map::protocol::envelope::decode_secret;

/// Where the operator is and how to talk to it, as the flags say.
#[derive(Debug)]
pub(super) struct OperatorTarget {
    /// The client configuration.
    pub(super) client: ClientConfig,
    /// `local`, `integ`, `prod` or `custom`, for the manifest and `--resume`.
    pub(super) env: String,
    /// Start the embedded emulator (`--env local`).
    pub(super) embedded: bool,
}

/// Where the operator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Env {
    /// The embedded local emulator (demo credentials; not real EUIDs).
    Local,
    /// EUID integration: https://integ.euid.eu
    Integ,
    /// EUID production: https://prod.euid.eu
    Prod,
}

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

/// Operator connection flags, shared with `refresh`.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// Environment: local (embedded emulator), integ or prod.
    #[arg(long, value_enum)]
    env: Option<Env>,
    /// Operator base URL (instead of --env), e.g. http://127.0.0.1:8080 for `euid-map operator`.
    #[arg(long, value_name = "URL", conflicts_with = "env")]
    base_url: Option<String>,
    /// API key (bearer token).
    #[arg(long, env = "EUID_API_KEY", hide_env_values = true, value_name = "KEY", value_parser = super::common::parse_secret)]
    api_key: Option<Secret<String>>,
    /// Client secret (base64 of 32 bytes).
    #[arg(
        long,
        env = "EUID_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        value_parser = super::common::parse_secret
    )]
    client_secret: Option<Secret<String>>,
    /// JSON file {"api_key": "...", "client_secret": "..."} instead of the environment.
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// Most requests in flight (the docs allow up to 20).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Most requests per second (default: no limit beyond --concurrency).
    #[arg(long)]
    rps: Option<u32>,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Retries per batch before its identities are marked failed.
    #[arg(long, default_value_t = 8)]
    max_retries: u32,
    /// Identity-map API. v3 is the default and the only one public EUID serves (v2 was
    /// deprecated on 30 September 2026); v2 is for private operators that still serve it,
    /// and stores each identity's bucket_id for `refresh --api v2`.
    #[arg(long, value_enum, default_value_t = ApiArg::V3)]
    api: ApiArg,
}

/// `--api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ApiArg {
    /// /v3/identity/map (default).
    V3,
    /// Legacy /v2/identity/map and /v2/identity/buckets.
    V2,
}

impl ClientArgs {
    /// Resolves the environment, base URL and credentials.
    pub(super) fn to_config(&self) -> anyhow::Result<OperatorTarget> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            usage!("--concurrency must be between 1 and {MAX_CONCURRENCY} (the documented maximum of parallel batches)");
        }
        let (base, env, embedded) = match (self.env, &self.base_url) {
            (Some(Env::Local), _) => (String::new(), "local", true),
            (Some(Env::Integ), _) => ("https://integ.euid.eu".to_string(), "integ", false),
            (Some(Env::Prod), _) => ("https://prod.euid.eu".to_string(), "prod", false),
            (None, Some(url)) => (url.clone(), "custom", false),
            (None, None) => {
                usage!("say where the operator is: --env local|integ|prod or --base-url URL")
            }
        };
        let base = if embedded {
            base
        } else {
            euid_map::config::operator_url(&base)?
        };
        let (api_key, secret) = if embedded {
            (
                String::new(),
                euid_map::protocol::DEMO_CLIENT_SECRET.to_string(),
            )
        } else {
            self.credentials()?
        };
        let secret = decode_secret(&secret)?;
        Ok(OperatorTarget {
            client: ClientConfig {
                base_url: base,
                api_key: Secret::new(api_key),
                secret,
                concurrency: self.concurrency,
                rps: self.rps.and_then(NonZeroU32::new),
                timeout: Duration::from_secs(self.timeout.max(1)),
                api: match self.api {
                    ApiArg::V3 => euid_map::client::Api::V3,
                    ApiArg::V2 => euid_map::client::Api::V2,
                },
                retry: RetryPolicy {
                    max_retries: self.max_retries,
                    ..RetryPolicy::default()
                },
            },
            env: env.to_string(),
            embedded,
        })
    }

    fn credentials(&self) -> anyhow::Result<(String, String)> {
        if let Some(path) = &self.credentials {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading credentials {}", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", path.display()))?;
            let field = |k: &str| {
                v[k].as_str()
                    .map(str::to_string)
                    .with_context(|| format!("{}: missing \"{k}\"", path.display()))
            };
            return Ok((field("api_key")?, field("client_secret")?));
        }
        let key = self
            .api_key
            .as_ref()
            .map(|k| k.expose().clone())
            .context("no API key: set EUID_API_KEY (or --credentials FILE)")?;
        let secret = self
            .client_secret
            .as_ref()
            .map(|k| k.expose().clone())
            .context("no client secret: set EUID_CLIENT_SECRET (or --credentials FILE)")?;
        Ok((key, secret))
    }
}

/// Runs the command.
pub(super) fn run(a: MapArgs) -> anyhow::Result<u8> {
    let job = a.job.to_config()?;
    let mapping = a.tuning.settings(a.client.to_config()?)?;
    let cfg = MapConfig { job, mapping };
    handle_signals(&cfg.job)?;
    let summary = euid_map::pipeline::run_map(&cfg)?;
    Ok(finish(&summary, &cfg.job, "rerun them later"))
}
