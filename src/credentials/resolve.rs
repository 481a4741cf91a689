//! Where the operator is and whose credentials to send, in the documented precedence: the
//! one rule the command's flags and the Python module both follow.
//!
//! Credentials are taken from the first of: an API key with its client secret; a
//! credentials command (or a JSON credentials file); `EUID_API_KEY` with
//! `EUID_CLIENT_SECRET`; the profile (named, or the section named after the environment
//! `integ`/`prod`) in `$EUID_CREDENTIALS_FILE` or `$XDG_CONFIG_HOME/euid-map/credentials.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Credentials, CredentialsError, Profile};
use crate::config::{env_of_url, env_url, public_env};
use crate::secret::Secret;

/// What the caller asked for: the command's flags, or the Python module's arguments (which
/// name the same things without the dashes).
#[derive(Debug, Default, Clone)]
pub struct TargetRequest {
    /// `local` (the embedded emulator), `integ` or `prod`.
    pub env: Option<String>,
    /// An operator's base URL (instead of `env`).
    pub base_url: Option<String>,
    /// The API key; first in precedence, with `client_secret`.
    pub api_key: Option<Secret<String>>,
    /// The client secret (base64 of 32 bytes), with `api_key`.
    pub client_secret: Option<Secret<String>>,
    /// A shell command printing `{"api_key": ..., "client_secret": ...}`.
    pub credentials_command: Option<String>,
    /// How long the credentials command may take.
    pub credentials_timeout: Duration,
    /// A JSON file `{"api_key": ..., "client_secret": ...}`.
    pub credentials_file: Option<PathBuf>,
    /// A profile of the credentials file.
    pub profile: Option<String>,
}

/// Where to connect and with what.
#[derive(Debug)]
pub struct Target {
    /// The operator's base URL (empty for the embedded emulator, started later).
    pub base_url: String,
    /// `local`, `integ`, `prod` or `custom`.
    pub env: String,
    /// Start the embedded emulator.
    pub embedded: bool,
    /// The credentials and where they came from.
    pub credentials: Credentials,
    /// The client secret, decoded.
    pub secret: Secret<[u8; 32]>,
}

/// Why no target could be resolved. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The request is contradictory or incomplete (the command exits 64).
    #[error("{0}")]
    Usage(String),
    /// The credentials could not be had.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The URL or the secret is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The client secret does not decode.
    #[error("the client secret from {from}: {err}")]
    Secret {
        /// Where it came from.
        from: String,
        /// Why it is unusable.
        err: crate::secret::SecretError,
    },
    /// A JSON credentials file is unreadable or incomplete.
    #[error("{0}")]
    File(String),
}

/// Resolves the environment, base URL and credentials of `req`.
///
/// # Errors
/// See [`ResolveError`].
pub fn resolve(req: &TargetRequest) -> Result<Target, ResolveError> {
    let usage = |m: &str| Err(ResolveError::Usage(m.to_string()));
    let env_arg = match req.env.as_deref() {
        None => None,
        Some(e @ ("local" | "integ" | "prod")) => Some(e),
        Some(other) => {
            return Err(ResolveError::Usage(format!(
                "env {other:?}: use local, integ or prod (or a base URL)"
            )))
        }
    };
    if env_arg.is_some() && req.base_url.is_some() {
        return usage("give the environment or a base URL, not both");
    }
    if req.credentials_command.is_some() && req.credentials_file.is_some() {
        return usage("--credentials-command and --credentials name the same thing: give one");
    }
    if req.api_key.is_some() != req.client_secret.is_some() {
        return usage("the API key and the client secret go together: give both or neither");
    }
    if env_arg == Some("local") {
        // The embedded emulator has its own demo key: credentials meant for a real
        // operator would be ignored without a word.
        let ignored = [
            (req.profile.is_some(), "--profile"),
            (req.api_key.is_some(), "--api-key"),
            (req.credentials_command.is_some(), "--credentials-command"),
            (req.credentials_file.is_some(), "--credentials"),
        ];
        if let Some((_, flag)) = ignored.iter().find(|(given, _)| *given) {
            return Err(ResolveError::Usage(format!(
                "--env local runs the embedded emulator with its own demo key, so {flag} would be ignored: drop it, or point --base-url at an operator (or `euid-map operator`) that takes those credentials"
            )));
        }
        let creds = Credentials {
            api_key: Secret::new(crate::protocol::DEMO_API_KEY.to_string()),
            client_secret: Secret::new(crate::protocol::DEMO_CLIENT_SECRET.to_string()),
            source: "the embedded emulator's demo key".to_string(),
            issued: None,
        };
        return target(String::new(), "local", true, creds);
    }
    let profiles = super::profiles_path();
    let explicit = match &req.profile {
        Some(name) => super::load_profile(&profiles, name, true)?,
        None => None,
    };
    let (base, env) = match (env_arg, &req.base_url, &explicit) {
        (Some(e), _, _) => (env_url(e).expect("public").to_string(), e),
        (None, Some(url), _) => (url.clone(), "custom"),
        (None, None, Some(p)) => match (&p.base_url, p.environment().as_deref()) {
            (Some(url), _) => (url.clone(), "custom"),
            (None, Some(e)) if public_env(e).is_some() => {
                let e = public_env(e).expect("checked");
                (env_url(e).expect("public").to_string(), e)
            }
            _ => {
                return Err(ResolveError::Usage(format!(
                    "profile [{}] names no environment: add env = \"integ\" or \"prod\" (or base_url), or pass --env",
                    p.name
                )))
            }
        },
        _ => {
            return usage(
                "say where the operator is: --env local|integ|prod, --base-url URL, or --profile NAME",
            )
        }
    };
    let base = crate::config::operator_url(&base)?;
    // A base URL that is integ's or prod's is that environment, whatever flag named it.
    let env = env_of_url(&base).unwrap_or(env);
    let creds = credentials(req, env, explicit, &profiles)?;
    target(base, env, false, creds)
}

/// The credentials, in the documented precedence.
fn credentials(
    req: &TargetRequest,
    env: &str,
    explicit: Option<Profile>,
    profiles: &Path,
) -> Result<Credentials, ResolveError> {
    if let (Some(k), Some(s)) = (&req.api_key, &req.client_secret) {
        return Ok(Credentials {
            api_key: k.clone(),
            client_secret: s.clone(),
            source: "--api-key".to_string(),
            issued: None,
        });
    }
    if let Some(cmd) = &req.credentials_command {
        return Ok(super::from_command(
            cmd,
            req.credentials_timeout.max(Duration::from_secs(1)),
        )?);
    }
    if let Some(path) = &req.credentials_file {
        return json_file(path);
    }
    if let Some(c) = super::from_environment() {
        if let Some(p) = &req.profile {
            tracing::warn!(
                profile = %p,
                "EUID_API_KEY and EUID_CLIENT_SECRET are set: they take precedence over --profile"
            );
        }
        return Ok(c);
    }
    let profile = match explicit {
        Some(p) => Some(p),
        None if public_env(env).is_some() => super::load_profile(profiles, env, false)?,
        None => None,
    };
    match profile {
        Some(p) => {
            p.check_environment(env)?;
            Ok(p.credentials)
        }
        None => Err(CredentialsError::Missing {
            env: env.to_string(),
            path: profiles.display().to_string(),
        }
        .into()),
    }
}

fn target(
    base_url: String,
    env: &str,
    embedded: bool,
    credentials: Credentials,
) -> Result<Target, ResolveError> {
    let secret =
        crate::secret::decode_client_secret(credentials.client_secret.expose()).map_err(|err| {
            ResolveError::Secret {
                from: credentials.source.clone(),
                err,
            }
        })?;
    Ok(Target {
        base_url,
        env: env.to_string(),
        embedded,
        credentials,
        secret,
    })
}

/// `--credentials FILE`: `{"api_key": "...", "client_secret": "..."}`.
fn json_file(path: &Path) -> Result<Credentials, ResolveError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ResolveError::File(format!("reading credentials {shown}: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| ResolveError::File(format!("{shown}: not JSON")))?;
    let field = |k: &str| {
        v[k].as_str()
            .map(|s| Secret::new(s.to_string()))
            .ok_or_else(|| ResolveError::File(format!("{shown}: missing \"{k}\"")))
    };
    Ok(Credentials {
        api_key: field("api_key")?,
        client_secret: field("client_secret")?,
        source: shown.to_string(),
        issued: None,
    })
}
