//! Validated configuration: what the CLI's flags become once checked. Library functions take
//! these types, never clap's, so an invalid combination cannot reach the pipeline.

use crate::client::{Api, ClientConfig};
use crate::input::{ColumnSpec, Fingerprint, InputError, InputFile};
use crate::output::{JobDescription, OutputKind};
pub use crate::secret::Secret;

/// Output rows per part file before it is committed (and becomes a resume point).
pub const DEFAULT_PART_ROWS: u64 = 1_000_000;

/// Why a configuration value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `optout --id-col` names a column that is not text.
    #[error("--id-col {column:?} holds {found}: raw EUIDs are strings")]
    IdColumnNotText {
        /// The column.
        column: String,
        /// Its type.
        found: String,
    },
    /// The client secret is unusable.
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    /// `--base-url` does not parse.
    #[error("--base-url {url:?} is not a URL: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// The parser's message.
        why: String,
    },
    /// `--base-url` has user info.
    #[error("--base-url must not carry user info (user@ or user:password@): {host}")]
    UserInfo {
        /// The host part.
        host: String,
    },
    /// `--base-url` has a query or a fragment, or no host.
    #[error("--base-url must be scheme://host[:port][/path], without query or fragment")]
    NotABase,
    /// Plain http to a host that is not this machine.
    #[error("refusing plain http:// to {host}: the API key would travel in clear; use https:// (plain http is allowed only to 127.0.0.0/8, ::1 or localhost)")]
    PlainHttp {
        /// The host.
        host: String,
    },
    /// Neither https nor http.
    #[error("--base-url must start with https:// (got {scheme}://)")]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
}

/// Checks an operator base URL and returns it without a trailing slash or `/v2`/`/v3`.
///
/// `https://` is required, except plain `http://` to this machine: an IP literal in
/// 127.0.0.0/8, `::1`, or exactly `localhost`. A host that merely starts with `127.`
/// (`127.0.0.1.nip.io`) is a remote host, and a URL with user info (`http://127.0.0.1@host`)
/// is refused outright: either would send the API key, a bearer token, in clear or to
/// somewhere else than it seems.
///
/// # Errors
/// The URL does not parse, has user info, a query or fragment, or is plain http to a
/// non-loopback host.
pub fn operator_url(raw: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| ConfigError::BadUrl {
        url: raw.to_string(),
        why: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::UserInfo {
            host: url.host_str().unwrap_or("?").to_string(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::NotABase);
    }
    let host = url.host().ok_or(ConfigError::NotABase)?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match &host {
                url::Host::Domain(d) => *d == "localhost",
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback(),
            };
            if !loopback {
                return Err(ConfigError::PlainHttp {
                    host: host.to_string(),
                });
            }
        }
        other => {
            return Err(ConfigError::Scheme {
                scheme: other.to_string(),
            })
        }
    }
    let s = url.as_str().trim_end_matches('/');
    Ok(s.trim_end_matches("/v2")
        .trim_end_matches("/v3")
        .trim_end_matches('/')
        .to_string())
}

/// The public EUID environments and their operator base URLs, as [`operator_url`] returns
/// them: the one table of them.
pub const PUBLIC_ENVS: [(&str, &str); 2] = [
    ("integ", "https://integ.euid.eu"),
    ("prod", "https://prod.euid.eu"),
];

/// `name` as the name of a public environment, if it is one.
pub fn public_env(name: &str) -> Option<&'static str> {
    PUBLIC_ENVS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, _)| *n)
}

/// The operator base URL of a public environment.
pub fn env_url(name: &str) -> Option<&'static str> {
    PUBLIC_ENVS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, u)| *u)
}

/// The public environment whose operator `url` is (compared as [`operator_url`] normalizes
/// it: case, trailing `/`, `/v2`, `/v3`); `None` for any other URL.
pub fn env_of_url(url: &str) -> Option<&'static str> {
    let url = operator_url(url).ok()?;
    PUBLIC_ENVS.iter().find(|(_, u)| *u == url).map(|(n, _)| *n)
}

/// What every job reads and where it writes.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Input files, in order.
    pub inputs: Vec<InputFile>,
    /// Column choices.
    pub columns: ColumnSpec,
    /// The output dataset directory or object-store prefix.
    pub out_dir: crate::storage::Location,
    /// Continue a previous run in `out_dir`.
    pub resume: bool,
    /// Start an unfinished run in `out_dir` over (`--restart`, `--restart-if-changed`).
    pub restart: crate::output::Restart,
    /// Output rows per part.
    pub part_rows: u64,
    /// No progress bar or log lines (errors are still reported).
    pub quiet: bool,
    /// The codec of the output's parts (`--compression`).
    pub compression: crate::output::Codec,
}

impl JobConfig {
    /// The `_job.json` description used to check `--resume`, with a fingerprint of every
    /// input so that a resumed run never continues over a changed file.
    ///
    /// # Errors
    /// An input cannot be read.
    pub fn describe(
        &self,
        command: &str,
        options: serde_json::Value,
    ) -> Result<JobDescription, InputError> {
        // One column is written as its name and none as null, as before columns could
        // repeat, so that directories written then still resume.
        let names = |v: &[String]| -> serde_json::Value {
            match v {
                [] => serde_json::Value::Null,
                [one] => one.as_str().into(),
                many => many.into(),
            }
        };
        let mut columns = serde_json::json!({
            "email": names(&self.columns.email),
            "phone": names(&self.columns.phone),
            "email_hash": names(&self.columns.email_hash),
            "phone_hash": names(&self.columns.phone_hash),
            "keep": self.columns.keep,
        });
        // The phone settings decide hashes, so a resumed run must share them; they are only
        // written when set, so that directories from before they existed still resume.
        if let Some(r) = &self.columns.phone_region {
            columns["phone_region"] = r.as_str().into();
        }
        // How cells are read decides their values; written only when set, as above.
        let unquoted = self
            .inputs
            .iter()
            .any(|f| matches!(f.format, crate::input::Format::Csv { quoting: false, .. }));
        if unquoted {
            columns["quote"] = "none".into();
        }
        if !self.columns.phone_region_col.is_empty() {
            columns["phone_region_col"] = names(&self.columns.phone_region_col);
        }
        Ok(JobDescription {
            command: command.to_string(),
            inputs: self.inputs.iter().map(|f| f.given.clone()).collect(),
            columns,
            options,
            fingerprints: self
                .inputs
                .iter()
                .map(Fingerprint::of)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// How to reach the operator and how to batch: shared by `map` and `refresh`.
#[derive(Debug, Clone)]
pub struct MapSettings {
    /// The operator and how to talk to it. For `--env local` the base URL and credentials
    /// are replaced by the embedded emulator's.
    pub client: ClientConfig,
    /// `local`, `integ`, `prod` or `custom`, for the manifest.
    pub env: String,
    /// Start the embedded emulator and map against it.
    pub embedded_operator: bool,
    /// Identities per request (≤ 5,000).
    pub batch_size: usize,
    /// Memory for the answer cache, bytes.
    pub cache_bytes: usize,
    /// How repeats are found (`map --dedupe`).
    pub dedupe: DedupeMode,
    /// `map --distinct`: write the lookup table (one row per distinct identity) instead of
    /// one row per input identity.
    pub distinct: bool,
    /// Where `--dedupe exact` keeps its scratch folder (default: beside a local output, the
    /// system's temporary directory for an object-store output).
    pub tmp_dir: Option<std::path::PathBuf>,
}

/// How `map` finds repeated identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupeMode {
    /// `window`, the one read: on a customer export few identities repeat far apart, and
    /// `exact`'s two extra passes would only add time. The run estimates how many it sent
    /// more than once (the manifest's `resent_estimate`) and names `--dedupe exact` when
    /// they are many. `map --distinct` runs `exact`.
    #[default]
    Auto,
    /// Each distinct identity sent once per run, whatever the file order (two reads of the
    /// input and a scratch folder).
    Exact,
    /// One read; a repeat is answered from the answer cache while its answer is remembered
    /// (`--dedupe-memory`), sent again otherwise.
    Window,
}

/// Rough input bytes per identity, to guess the input's identities from its size.
const BYTES_PER_IDENTITY_GUESS: u64 = 30;

impl MapSettings {
    /// The mode that runs for inputs of `input_bytes`, and the guess of their identities.
    pub fn dedupe_for(&self, input_bytes: u64) -> (DedupeMode, u64) {
        let guess = input_bytes / BYTES_PER_IDENTITY_GUESS;
        (self.dedupe.runs(self.distinct), guess)
    }
}

impl DedupeMode {
    /// The mode that runs when this one is asked for: `auto` runs `window`, and a lookup
    /// table (`distinct`) always `exact`.
    pub fn runs(self, distinct: bool) -> DedupeMode {
        match self {
            _ if distinct => DedupeMode::Exact,
            DedupeMode::Auto => DedupeMode::Window,
            m => m,
        }
    }
}

impl MapSettings {
    /// The dataset this API writes (v2 adds `bucket_id`).
    pub fn output_kind(&self) -> OutputKind {
        match self.client.api {
            _ if self.distinct => OutputKind::Lookup,
            Api::V3 => OutputKind::Map,
            Api::V2 => OutputKind::MapV2,
        }
    }
}

/// Everything `euid-map map` needs.
#[derive(Debug, Clone)]
pub struct MapConfig {
    /// Inputs, columns, output.
    pub job: JobConfig,
    /// Operator and batching.
    pub mapping: MapSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #9.10: plain http only to real loopback, and never with user info.
    /// A profile's or a flag's URL names a public environment however it is spelled.
    #[test]
    fn public_environments_are_found_from_any_spelling_of_their_url() {
        assert_eq!(env_of_url("https://prod.euid.eu"), Some("prod"));
        assert_eq!(env_of_url("https://PROD.euid.eu/v3/"), Some("prod"));
        assert_eq!(env_of_url("https://integ.euid.eu/v2"), Some("integ"));
        assert_eq!(env_of_url("https://operator.example.com"), None);
        assert_eq!(env_of_url("not a url"), None);
        assert_eq!(env_url("integ"), Some("https://integ.euid.eu"));
        assert_eq!(public_env("local"), None);
    }

    #[test]
    fn plain_http_only_to_loopback_and_never_with_user_info() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.8.9.10/",
            "http://[::1]:9000/v3",
            "http://localhost:1234",
            "https://prod.euid.eu",
            "https://operator.example.com/v2/",
        ] {
            assert!(operator_url(ok).is_ok(), "{ok}: {:?}", operator_url(ok));
        }
        for bad in [
            "http://127.0.0.1.nip.io",
            "http://127.0.0.1@example.com",
            "https://user:pw@prod.euid.eu",
            "http://localhost.example.com",
            "http://example.com",
            "http://10.0.0.1",
            "http://[::2]",
            "ftp://127.0.0.1",
            "127.0.0.1:8080",
        ] {
            assert!(operator_url(bad).is_err(), "{bad} must be refused");
        }
        assert_eq!(
            operator_url("http://127.0.0.1:8080/v3/").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
    }
}
