//! Operator connection flags shared by `map`, `refresh` and `credentials check`: where the
//! operator is, which credentials (in the documented precedence), and how hard to push.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::usage;
use euid_map::client::{ClientConfig, RetryPolicy, MAX_CONCURRENCY};
use euid_map::credentials;
use euid_map::secret::Secret;

/// Where the operator is and how to talk to it, as the flags say.
#[derive(Debug)]
pub(super) struct OperatorTarget {
    /// The client configuration.
    pub(super) client: ClientConfig,
    /// `local`, `integ`, `prod` or `custom`, for the manifest and `--resume`.
    pub(super) env: String,
    /// Start the embedded emulator (`--env local`).
    pub(super) embedded: bool,
    /// Where the credentials came from (never the credentials).
    pub(super) source: String,
    /// When the key was issued, if its profile says.
    pub(super) issued: Option<chrono::NaiveDate>,
}

impl ClientArgs {
    /// The operator target of a dataset job, with the key's age recorded in its metrics (and
    /// a rotation warning past a year); also where the credentials came from, for errors.
    pub(super) fn job_target(
        &self,
        metrics: &euid_map::metrics::RunMetrics,
    ) -> anyhow::Result<(OperatorTarget, String)> {
        let target = self.to_config()?;
        target.remind_rotation(metrics, euid_map::credentials::DEFAULT_MAX_KEY_AGE_DAYS);
        let source = target.source.clone();
        Ok((target, source))
    }
}

impl OperatorTarget {
    /// Days since the key was issued, if known.
    pub(super) fn key_age_days(&self) -> Option<i64> {
        self.issued
            .map(|d| (chrono::Utc::now().date_naive() - d).num_days())
    }

    /// Warns (log and stderr) when the key is older than `max_days`; EUID asks for yearly
    /// rotation. Records the age in the run's metrics.
    pub(super) fn remind_rotation(&self, metrics: &euid_map::metrics::RunMetrics, max_days: i64) {
        let Some(age) = self.key_age_days() else {
            return;
        };
        metrics.set_credentials_age_days(age);
        if age > max_days {
            tracing::warn!(
                age_days = age,
                max_days,
                "the API key from {} was issued {age} days ago: rotate it (EUID asks for yearly rotation)",
                self.source
            );
        }
    }
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

/// `--api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ApiArg {
    /// /v3/identity/map (default).
    V3,
    /// Legacy /v2/identity/map and /v2/identity/buckets.
    V2,
}

/// Operator connection flags.
///
/// Credentials are taken from the first of: --api-key with --client-secret;
/// --credentials-command (or --credentials FILE); EUID_API_KEY with EUID_CLIENT_SECRET; the
/// profile (--profile NAME, or the section named after --env integ|prod) in
/// $EUID_CREDENTIALS_FILE or $XDG_CONFIG_HOME/euid-map/credentials.toml.
#[derive(Debug, Args)]
#[command(next_help_heading = "Operator and credentials")]
pub(crate) struct ClientArgs {
    /// Environment: local (embedded emulator), integ or prod.
    #[arg(long, value_enum)]
    env: Option<Env>,
    /// Operator base URL (instead of --env), e.g. http://127.0.0.1:8080 for `euid-map operator`.
    #[arg(long, value_name = "URL", conflicts_with = "env")]
    base_url: Option<String>,
    /// API key (bearer token); first in precedence, before --credentials-command,
    /// EUID_API_KEY and profiles. Prefer those: a flag shows in `ps`.
    #[arg(long, value_name = "KEY", requires = "client_secret", value_parser = super::common::parse_secret)]
    api_key: Option<Secret<String>>,
    /// Client secret (base64 of 32 bytes), with --api-key.
    #[arg(long, value_name = "SECRET", requires = "api_key", value_parser = super::common::parse_secret)]
    client_secret: Option<Secret<String>>,
    /// Run CMD through the shell and read {"api_key": ..., "client_secret": ...} from its
    /// stdout (the AWS credential_process convention: Vault, a secrets manager, a password
    /// manager's CLI). Second in precedence.
    #[arg(long, value_name = "CMD", conflicts_with = "credentials")]
    credentials_command: Option<String>,
    /// Seconds --credentials-command may take before it is stopped (exit 1, naming only its
    /// first word): a command waiting on a prompt or a network must not hang the job.
    #[arg(long, value_name = "SECONDS", default_value_t = euid_map::shell::DEFAULT_TIMEOUT.as_secs(), requires = "credentials_command")]
    credentials_timeout: u64,
    /// JSON file {"api_key": "...", "client_secret": "..."}, at the same precedence as
    /// --credentials-command.
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// Profile [NAME] of the credentials file (last in precedence; without it, --env integ
    /// or prod uses the section of that name if there is one). A profile for another
    /// environment than the run's is refused.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Ceiling of requests in flight (the docs allow up to 20). The window adapts below it:
    /// it starts at 8, doubles per round trip while the operator keeps up, and backs off on
    /// 429/503/timeouts and on a rising round-trip time.
    #[arg(long, default_value_t = MAX_CONCURRENCY)]
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
    /// Stop the run (exit 1) when the operator has sent no answer to any request for this
    /// many seconds: an operator that accepts connections and never answers.
    #[arg(long, default_value_t = euid_map::client::DEFAULT_STALL.as_secs(), value_name = "SECS")]
    stall_timeout: u64,
    /// Identity-map API. v3 is the default and the only one public EUID serves (v2 was
    /// deprecated on 30 September 2026); v2 is for private operators that still serve it,
    /// and stores each identity's bucket_id for `refresh --api v2`.
    #[arg(long, value_enum, default_value_t = ApiArg::V3)]
    api: ApiArg,
}

impl ClientArgs {
    /// Resolves the environment, base URL and credentials (`credentials::resolve`, the rule
    /// the Python module follows too).
    pub(super) fn to_config(&self) -> anyhow::Result<OperatorTarget> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            usage!("--concurrency must be between 1 and {MAX_CONCURRENCY} (the documented maximum of parallel batches)");
        }
        let req = credentials::TargetRequest {
            env: self.env.map(|e| {
                match e {
                    Env::Local => "local",
                    Env::Integ => "integ",
                    Env::Prod => "prod",
                }
                .to_string()
            }),
            base_url: self.base_url.clone(),
            api_key: self.api_key.clone(),
            client_secret: self.client_secret.clone(),
            credentials_command: self.credentials_command.clone(),
            credentials_timeout: Duration::from_secs(self.credentials_timeout.max(1)),
            credentials_file: self.credentials.clone(),
            profile: self.profile.clone(),
        };
        let t = match credentials::resolve(&req) {
            Ok(t) => t,
            Err(credentials::ResolveError::Usage(m)) => usage!("{m}"),
            Err(e) => return Err(e.into()),
        };
        Ok(OperatorTarget {
            client: ClientConfig {
                base_url: t.base_url,
                api_key: t.credentials.api_key,
                secret: t.secret,
                concurrency: self.concurrency,
                rps: self.rps.and_then(NonZeroU32::new),
                timeout: Duration::from_secs(self.timeout.max(1)),
                api: match self.api {
                    ApiArg::V3 => euid_map::client::Api::V3,
                    ApiArg::V2 => euid_map::client::Api::V2,
                },
                retry: RetryPolicy {
                    max_retries: self.max_retries,
                    stall: Duration::from_secs(self.stall_timeout.max(1)),
                    ..RetryPolicy::default()
                },
            },
            env: t.env,
            embedded: t.embedded,
            source: t.credentials.source,
            issued: t.credentials.issued,
        })
    }
}
