//! Where the API key and client secret come from, the EUID way: flags, a credentials
//! command (the AWS `credential_process` convention), the environment, or a profile in
//! `credentials.toml` (private to its owner, like an ssh key); and the key's non-secret
//! identifier, which the manifest records. Secrets never appear in errors or `Debug`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

mod resolve;
pub use resolve::{resolve, ResolveError, Target, TargetRequest};

/// Overrides the credentials file's location.
pub const FILE_ENV: &str = "EUID_CREDENTIALS_FILE";
/// The API key's environment variable.
pub const API_KEY_ENV: &str = "EUID_API_KEY";
/// The client secret's environment variable.
pub const SECRET_ENV: &str = "EUID_CLIENT_SECRET";
/// The most a credentials command may print (it prints two short strings).
const COMMAND_OUTPUT_MAX: u64 = crate::shell::OUTPUT_CAP;

/// Why credentials could not be had. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The credentials file is readable by group or others.
    #[error("{path} can be read or written by others (mode {mode:o}): a credentials file must be private; run chmod 600 {path} (or 640 with a group of its own, as a Kubernetes Secret mounted with fsGroup is)")]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The credentials file cannot be read or parsed.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// `--profile NAME` names no section.
    #[error("{path} has no profile [{name}] (profiles: {available})")]
    NoProfile {
        /// The file.
        path: String,
        /// The profile asked for.
        name: String,
        /// The sections the file has.
        available: String,
    },
    /// The profile is for another environment than the run.
    #[error("profile [{name}] is for {profile_env}, but this run is for {run_env}: an integ key never reaches prod, nor the other way round")]
    WrongEnvironment {
        /// The profile.
        name: String,
        /// Its environment.
        profile_env: String,
        /// The run's.
        run_env: String,
    },
    /// The credentials command failed.
    #[error("--credentials-command failed ({status}): {stderr}")]
    CommandFailed {
        /// Its exit status.
        status: String,
        /// The start of its stderr.
        stderr: String,
    },
    /// The credentials command printed something else than the JSON object.
    #[error("--credentials-command must print {{\"api_key\": \"...\", \"client_secret\": \"...\"}} on stdout; {why}")]
    CommandOutput {
        /// What is wrong (never the output itself).
        why: String,
    },
    /// Nothing provided credentials.
    #[error("no credentials for {env}: pass --api-key/--client-secret, --credentials-command, set EUID_API_KEY and EUID_CLIENT_SECRET, or add a profile [{env}] to {path}")]
    Missing {
        /// The run's environment.
        env: String,
        /// Where profiles are read from.
        path: String,
    },
}

/// An API key and its client secret (base64, as issued).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The API key (a bearer token).
    pub api_key: Secret<String>,
    /// The client secret, base64 of 32 bytes.
    pub client_secret: Secret<String>,
    /// Where they came from, for messages (`--api-key`, `profile [prod]`, …).
    pub source: String,
    /// When the key was issued (a profile's `issued = 2026-01-15`), to remind of rotation.
    pub issued: Option<chrono::NaiveDate>,
}

/// Keys older than this many days are due for rotation (EUID asks for yearly rotation).
pub const DEFAULT_MAX_KEY_AGE_DAYS: i64 = 365;

impl Credentials {
    /// Days since the key was issued, if the profile says when.
    pub fn age_days(&self, today: chrono::NaiveDate) -> Option<i64> {
        self.issued.map(|d| (today - d).num_days())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileEntry {
    api_key: String,
    client_secret: String,
    base_url: Option<String>,
    env: Option<String>,
    /// `YYYY-MM-DD`: when the key was issued.
    issued: Option<String>,
}

/// One `[NAME]` section of `credentials.toml`.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The section's name.
    pub name: String,
    /// Its credentials.
    pub credentials: Credentials,
    /// `base_url`, if set.
    pub base_url: Option<String>,
    /// `env` (`integ` or `prod`), if set.
    pub env: Option<String>,
}

impl Profile {
    /// The environment the profile is for: `env`, else what its `base_url` or its name says
    /// (`integ`, `prod`), else `None`.
    pub fn environment(&self) -> Option<String> {
        if let Some(e) = &self.env {
            return Some(e.clone());
        }
        match self.base_url.as_deref() {
            Some(u) => Some(crate::config::env_of_url(u).unwrap_or("custom").into()),
            None => crate::config::public_env(&self.name).map(String::from),
        }
    }

    /// Checks that the profile may be used for a run against `run_env`.
    ///
    /// # Errors
    /// [`CredentialsError::WrongEnvironment`].
    pub fn check_environment(&self, run_env: &str) -> Result<(), CredentialsError> {
        match self.environment() {
            Some(e) if e != run_env => Err(CredentialsError::WrongEnvironment {
                name: self.name.clone(),
                profile_env: e,
                run_env: run_env.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// Where profiles are read from: `EUID_CREDENTIALS_FILE`, else
/// `$XDG_CONFIG_HOME/euid-map/credentials.toml`, else `~/.config/euid-map/credentials.toml`.
pub fn profiles_path() -> PathBuf {
    if let Some(p) = std::env::var_os(FILE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    config.join("euid-map").join("credentials.toml")
}

/// Reads profile `name` from `path`. `Ok(None)` when the file does not exist, or when the
/// profile does not exist and `required` is false.
///
/// # Errors
/// The file is readable by group or others (refused, as ssh refuses a private key), cannot
/// be parsed, or lacks a required profile.
pub fn load_profile(
    path: &Path,
    name: &str,
    required: bool,
) -> Result<Option<Profile>, CredentialsError> {
    let shown = path.display().to_string();
    let file_err = |why: String| CredentialsError::File {
        path: shown.clone(),
        why,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(file_err(e.to_string())),
    };
    let mode = meta.permissions().mode() & 0o777;
    // Others may never read or write it, nor its group write it. Group read is allowed: a
    // Kubernetes Secret mounted with `fsGroup` is 0440, readable by the pod's own group,
    // which is how a non-root pod reads it; on a shared host give the file a private group.
    if mode & 0o027 != 0 {
        return Err(CredentialsError::Exposed { path: shown, mode });
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    // The parser's messages quote the offending line, which may hold a secret: say where.
    let mut sections: std::collections::BTreeMap<String, ProfileEntry> = toml::from_str(&text)
        .map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(" at line {}", text[..s.start].lines().count().max(1)))
                .unwrap_or_default();
            file_err(format!("not a credentials file{at} (sections [NAME] with api_key, client_secret, and optionally base_url or env)"))
        })?;
    let Some(entry) = sections.remove(name) else {
        if !required {
            return Ok(None);
        }
        return Err(CredentialsError::NoProfile {
            path: shown,
            name: name.to_string(),
            available: sections.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    };
    if let Some(e) = &entry.env {
        if crate::config::public_env(e).is_none() {
            return Err(file_err(format!(
                "[{name}] env must be \"integ\" or \"prod\", not {e:?}"
            )));
        }
    }
    let issued = match &entry.issued {
        None => None,
        Some(d) => Some(
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                file_err(format!(
                    "[{name}] issued must be a date such as \"2026-01-15\", not {d:?}"
                ))
            })?,
        ),
    };
    Ok(Some(Profile {
        name: name.to_string(),
        credentials: Credentials {
            api_key: Secret::new(entry.api_key),
            client_secret: Secret::new(entry.client_secret),
            source: format!("profile [{name}] of {shown}"),
            issued,
        },
        base_url: entry.base_url,
        env: entry.env,
    }))
}

/// Runs `command` through `sh -c` and reads `{"api_key": …, "client_secret": …}` from its
/// stdout (the AWS `credential_process` convention). Its output is never logged.
///
/// # Errors
/// The command cannot start, fails (its status and the start of its stderr are given), or
/// prints something else.
pub fn from_command(
    command: &str,
    timeout: std::time::Duration,
) -> Result<Credentials, CredentialsError> {
    let out = crate::shell::run(command, timeout, COMMAND_OUTPUT_MAX).map_err(|e| {
        CredentialsError::CommandFailed {
            status: match &e {
                crate::shell::ShellError::TimedOut { .. } => "timed out".to_string(),
                crate::shell::ShellError::Start { .. } => "could not start".to_string(),
            },
            stderr: e.to_string(),
        }
    })?;
    let (status, stdout, stderr) = (out.status, out.stdout, out.stderr);
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        return Err(CredentialsError::CommandFailed {
            status: match status.code() {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".to_string(),
            },
            stderr: text.trim().chars().take(500).collect(),
        });
    }
    #[derive(Deserialize)]
    struct Output {
        api_key: Option<String>,
        client_secret: Option<String>,
    }
    let parsed: Output =
        serde_json::from_slice(stdout.expose()).map_err(|_| CredentialsError::CommandOutput {
            why: "its output is not a JSON object".to_string(),
        })?;
    match (parsed.api_key, parsed.client_secret) {
        (Some(k), Some(s)) => Ok(Credentials {
            api_key: Secret::new(k),
            client_secret: Secret::new(s),
            source: "--credentials-command".to_string(),
            issued: None,
        }),
        _ => Err(CredentialsError::CommandOutput {
            why: "api_key or client_secret is missing".to_string(),
        }),
    }
}

/// The environment's credentials, when both variables are set.
pub fn from_environment() -> Option<Credentials> {
    let key = std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty())?;
    let secret = std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty())?;
    Some(Credentials {
        api_key: Secret::new(key),
        client_secret: Secret::new(secret),
        source: "EUID_API_KEY/EUID_CLIENT_SECRET".to_string(),
        issued: None,
    })
}

/// The key's non-secret identifier: the part before the first `.` (EUID keys look like
/// `EUID-C-P-1234-abcdef.<secret part>`), or `sha256:` and 12 hex digits of the key when it
/// has no `.`. Safe to log and to write into the manifest.
pub fn key_id(api_key: &Secret<String>) -> String {
    let key = api_key.expose();
    match key.split_once('.') {
        Some((id, _)) if !id.is_empty() => id.to_string(),
        _ => {
            let digest = Sha256::digest(key.as_bytes());
            let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
    }
}

#[cfg(test)]
mod tests;
