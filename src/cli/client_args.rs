//! Operator connection flags shared by `map`, `refresh` and `credentials check`: where the
//! operator is, which credentials (in the documented precedence), and how hard to push.

use euid_map::config::{env_of_url, env_url, public_env};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::usage;
use euid_map::client::{ClientConfig, RetryPolicy, MAX_CONCURRENCY};
use euid_map::credentials::{self, Credentials};
use euid_map::protocol::envelope::decode_secret;
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
    /// Resolves the environment, base URL and credentials.
    pub(super) fn to_config(&self) -> anyhow::Result<OperatorTarget> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            usage!("--concurrency must be between 1 and {MAX_CONCURRENCY} (the documented maximum of parallel batches)");
        }
        if self.env == Some(Env::Local) {
            // The embedded emulator has its own demo key: credentials meant for a real
            // operator would be ignored without a word.
            let ignored = [
                (self.profile.is_some(), "--profile"),
                (self.api_key.is_some(), "--api-key"),
                (self.credentials_command.is_some(), "--credentials-command"),
                (self.credentials.is_some(), "--credentials"),
            ];
            if let Some((_, flag)) = ignored.iter().find(|(given, _)| *given) {
                usage!(
                    "--env local runs the embedded emulator with its own demo key, so {flag} would be ignored: drop it, or point --base-url at an operator (or `euid-map operator`) that takes those credentials"
                );
            }
            return self.target(
                String::new(),
                "local",
                true,
                Credentials {
                    api_key: Secret::new(euid_map::protocol::DEMO_API_KEY.to_string()),
                    client_secret: Secret::new(euid_map::protocol::DEMO_CLIENT_SECRET.to_string()),
                    source: "the embedded emulator's demo key".to_string(),
                    issued: None,
                },
            );
        }
        let profiles = credentials::profiles_path();
        let explicit = match &self.profile {
            Some(name) => credentials::load_profile(&profiles, name, true)?,
            None => None,
        };
        let (base, env) = match (self.env, &self.base_url, &explicit) {
            (Some(Env::Integ), _, _) => (env_url("integ").expect("public").to_string(), "integ"),
            (Some(Env::Prod), _, _) => (env_url("prod").expect("public").to_string(), "prod"),
            (None, Some(url), _) => (url.clone(), "custom"),
            (None, None, Some(p)) => match (&p.base_url, p.environment().as_deref()) {
                (Some(url), _) => (url.clone(), "custom"),
                (None, Some(e)) if public_env(e).is_some() => {
                    let e = public_env(e).expect("checked");
                    (env_url(e).expect("public").to_string(), e)
                }
                _ => usage!(
                    "profile [{}] names no environment: add env = \"integ\" or \"prod\" (or base_url), or pass --env",
                    p.name
                ),
            },
            _ => usage!(
                "say where the operator is: --env local|integ|prod, --base-url URL, or --profile NAME"
            ),
        };
        let base = euid_map::config::operator_url(&base)?;
        // A base URL that is integ's or prod's is that environment, whatever flag named it.
        let env = env_of_url(&base).unwrap_or(env);
        let creds = self.credentials(env, explicit, &profiles)?;
        self.target(base, env, false, creds)
    }

    /// The credentials, in the documented precedence.
    fn credentials(
        &self,
        env: &str,
        explicit: Option<credentials::Profile>,
        profiles: &std::path::Path,
    ) -> anyhow::Result<Credentials> {
        if let (Some(k), Some(s)) = (&self.api_key, &self.client_secret) {
            return Ok(Credentials {
                api_key: k.clone(),
                client_secret: s.clone(),
                source: "--api-key".to_string(),
                issued: None,
            });
        }
        if let Some(cmd) = &self.credentials_command {
            return Ok(credentials::from_command(
                cmd,
                std::time::Duration::from_secs(self.credentials_timeout.max(1)),
            )?);
        }
        if let Some(path) = &self.credentials {
            return json_file(path);
        }
        if let Some(c) = credentials::from_environment() {
            if let Some(p) = &self.profile {
                tracing::warn!(
                    profile = %p,
                    "EUID_API_KEY and EUID_CLIENT_SECRET are set: they take precedence over --profile"
                );
            }
            return Ok(c);
        }
        let profile = match explicit {
            Some(p) => Some(p),
            None if public_env(env).is_some() => credentials::load_profile(profiles, env, false)?,
            None => None,
        };
        match profile {
            Some(p) => {
                p.check_environment(env)?;
                Ok(p.credentials)
            }
            None => Err(credentials::CredentialsError::Missing {
                env: env.to_string(),
                path: profiles.display().to_string(),
            }
            .into()),
        }
    }

    fn target(
        &self,
        base_url: String,
        env: &str,
        embedded: bool,
        creds: Credentials,
    ) -> anyhow::Result<OperatorTarget> {
        let secret = decode_secret(creds.client_secret.expose())
            .with_context(|| format!("the client secret from {}", creds.source))?;
        Ok(OperatorTarget {
            client: ClientConfig {
                base_url,
                api_key: creds.api_key,
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
                    stall: Duration::from_secs(self.stall_timeout.max(1)),
                    ..RetryPolicy::default()
                },
            },
            env: env.to_string(),
            embedded,
            source: creds.source,
            issued: creds.issued,
        })
    }
}

/// `--credentials FILE`: `{"api_key": "...", "client_secret": "..."}`.
fn json_file(path: &std::path::Path) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading credentials {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| anyhow::anyhow!("{}: not JSON", path.display()))?;
    let field = |k: &str| {
        v[k].as_str()
            .map(|s| Secret::new(s.to_string()))
            .with_context(|| format!("{}: missing \"{k}\"", path.display()))
    };
    Ok(Credentials {
        api_key: field("api_key")?,
        client_secret: field("client_secret")?,
        source: path.display().to_string(),
        issued: None,
    })
}
