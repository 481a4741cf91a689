//! `euid-map map`: the bulk mapping job.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::common::{finish, JobArgs, Tuning};
use crate::client::envelope::decode_secret;
use crate::client::{ClientConfig, RetryPolicy, MAX_CONCURRENCY};
use crate::config::Secret;
use crate::pipeline::MapConfig;

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
pub struct MapArgs {
    #[command(flatten)]
    job: JobArgs,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    tuning: Tuning,
}

/// Operator connection flags, shared with `refresh`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Environment: local (embedded emulator), integ or prod.
    #[arg(long, value_enum)]
    env: Option<Env>,
    /// Operator base URL (instead of --env), e.g. http://127.0.0.1:8080 for `euid-map operator`.
    #[arg(long, value_name = "URL", conflicts_with = "env")]
    base_url: Option<String>,
    /// API key (bearer token).
    #[arg(long, env = "EUID_API_KEY", hide_env_values = true, value_name = "KEY", value_parser = crate::config::parse_secret)]
    api_key: Option<Secret<String>>,
    /// Client secret (base64 of 32 bytes).
    #[arg(
        long,
        env = "EUID_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        value_parser = crate::config::parse_secret
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
pub enum ApiArg {
    /// /v3/identity/map (default).
    V3,
    /// Legacy /v2/identity/map and /v2/identity/buckets.
    V2,
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

impl ClientArgs {
    /// Resolves the environment, base URL and credentials. Returns the config, the
    /// environment label and whether to start the embedded operator.
    pub(super) fn to_config(&self) -> anyhow::Result<(ClientConfig, String, bool)> {
        anyhow::ensure!(
            (1..=MAX_CONCURRENCY).contains(&self.concurrency),
            "--concurrency must be between 1 and {MAX_CONCURRENCY} (the documented maximum of parallel batches)"
        );
        let (base, env, embedded) = match (self.env, &self.base_url) {
            (Some(Env::Local), _) => (String::new(), "local", true),
            (Some(Env::Integ), _) => ("https://integ.euid.eu".to_string(), "integ", false),
            (Some(Env::Prod), _) => ("https://prod.euid.eu".to_string(), "prod", false),
            (None, Some(url)) => (url.clone(), "custom", false),
            (None, None) => {
                anyhow::bail!("say where the operator is: --env local|integ|prod or --base-url URL")
            }
        };
        let base = base
            .trim_end_matches('/')
            .trim_end_matches("/v2")
            .trim_end_matches("/v3")
            .to_string();
        if !embedded {
            let rest = base
                .strip_prefix("https://")
                .or_else(|| base.strip_prefix("http://"))
                .with_context(|| format!("--base-url must start with https:// (got {base:?})"))?;
            let host = rest.split('/').next().unwrap_or("");
            let host = if host.starts_with('[') {
                host.split(']')
                    .next()
                    .map(|h| format!("{h}]"))
                    .unwrap_or_default()
            } else {
                host.split(':').next().unwrap_or("").to_string()
            };
            anyhow::ensure!(
                base.starts_with("https://") || is_loopback(&host),
                "refusing plain http:// to {host}: the API key would travel in clear; use https:// (plain http is allowed only to loopback)"
            );
        }
        let (api_key, secret) = if embedded {
            (
                String::new(),
                crate::operator::keys::DEMO_CLIENT_SECRET.to_string(),
            )
        } else {
            self.credentials()?
        };
        let secret = decode_secret(&secret).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((
            ClientConfig {
                base_url: base,
                api_key: Secret::new(api_key),
                secret,
                concurrency: self.concurrency,
                rps: self.rps.and_then(NonZeroU32::new),
                timeout: Duration::from_secs(self.timeout.max(1)),
                api: match self.api {
                    ApiArg::V3 => crate::client::Api::V3,
                    ApiArg::V2 => crate::client::Api::V2,
                },
                retry: RetryPolicy {
                    max_retries: self.max_retries,
                    ..RetryPolicy::default()
                },
            },
            env.to_string(),
            embedded,
        ))
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
    let summary = crate::pipeline::run_map(&cfg)?;
    Ok(finish(&summary, &cfg.job, "rerun them later"))
}
