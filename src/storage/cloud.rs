//! Building the S3, GCS and Azure clients from each cloud's standard configuration, with
//! nothing euid-specific:
//!
//! - **S3**: `AWS_*` environment variables (keys, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//!   `AWS_ENDPOINT_URL_S3`, `AWS_ALLOW_HTTP`), then the shared profile (`AWS_PROFILE`, else
//!   `default`, from `~/.aws/credentials` and `~/.aws/config`, static keys or
//!   `credential_process`), then web identity (EKS IRSA), the ECS task role and instance
//!   metadata, in the AWS SDKs' order.
//! - **GCS**: `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_APPLICATION_CREDENTIALS`, application default
//!   credentials, the metadata server.
//! - **Azure**: `AZURE_STORAGE_*` / `AZURE_CLIENT_*` variables, managed identity;
//!   `AZURE_STORAGE_USE_EMULATOR=true` for Azurite.
//!
//! All three use the process's rustls with the ring provider, like the operator client.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::ObjectStore;

use super::StorageError;

fn config_err(url: &str, e: object_store::Error) -> StorageError {
    StorageError::Config {
        url: url.to_string(),
        why: super::with_hint(super::scrub(&super::error_chain(&e))),
    }
}

/// The S3 client of a bucket.
pub(super) fn s3(base: &str, shown: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    crate::tls::install_provider();
    let mut b = AmazonS3Builder::from_env().with_url(base);
    let (profile, process) = aws_profile().map_err(|why| StorageError::Config {
        url: shown.to_string(),
        why,
    })?;
    for (k, v) in profile {
        b = b.with_config(k, v);
    }
    if let Some(p) = process {
        b = b.with_credentials(Arc::new(p));
    }
    b.build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| config_err(shown, e))
}

/// The GCS client of a bucket.
pub(super) fn gcs(base: &str, shown: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    crate::tls::install_provider();
    GoogleCloudStorageBuilder::from_env()
        .with_url(base)
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| config_err(shown, e))
}

/// The Azure Blob client of a container.
pub(super) fn azure(base: &str, shown: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    crate::tls::install_provider();
    MicrosoftAzureBuilder::from_env()
        .with_url(base)
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| config_err(shown, e))
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn home() -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

/// Sections of an AWS shared config or credentials file: name → key → value.
fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            out.entry(name.trim().to_string()).or_default();
        } else if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

fn read_ini(var: &str, default: &str) -> HashMap<String, HashMap<String, String>> {
    let path = env(var)
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws").join(default)));
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_ini(&t))
        .unwrap_or_default()
}

/// Settings from the shared AWS profile, when the environment holds no keys: static keys,
/// or the output of its `credential_process`, and its region and endpoint unless the
/// environment sets them. An explicitly named profile that does not exist, or that only
/// the AWS CLI can use (SSO, role chaining), is an error; the implicit `default` profile is
/// skipped then, and the chain goes on (web identity, ECS, instance metadata).
fn aws_profile() -> Result<AwsProfile, String> {
    let explicit = env("AWS_PROFILE").or_else(|| env("AWS_DEFAULT_PROFILE"));
    let name = explicit.clone().unwrap_or_else(|| "default".to_string());
    let creds = read_ini("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config = read_ini("AWS_CONFIG_FILE", "config");
    let from_creds = creds.get(&name);
    let from_config = if name == "default" {
        config.get("default")
    } else {
        config.get(&format!("profile {name}"))
    };
    if from_creds.is_none() && from_config.is_none() {
        return match explicit {
            Some(_) => Err(format!(
                "AWS_PROFILE={name}: no such profile in the AWS credentials or config file"
            )),
            None => Ok((Vec::new(), None)),
        };
    }
    let get = |k: &str| {
        from_creds
            .and_then(|s| s.get(k))
            .or_else(|| from_config.and_then(|s| s.get(k)))
            .cloned()
    };
    let mut out = Vec::new();
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        if let Some(r) = get("region") {
            out.push((AmazonS3ConfigKey::Region, r));
        }
    }
    if env("AWS_ENDPOINT_URL").is_none() && env("AWS_ENDPOINT_URL_S3").is_none() {
        if let Some(e) = get("endpoint_url") {
            out.push((AmazonS3ConfigKey::Endpoint, e));
        }
    }
    if env("AWS_ACCESS_KEY_ID").is_some() {
        return Ok((out, None)); // the environment's keys come first
    }
    if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
        out.push((AmazonS3ConfigKey::AccessKeyId, id));
        out.push((AmazonS3ConfigKey::SecretAccessKey, secret));
        if let Some(t) = get("aws_session_token") {
            out.push((AmazonS3ConfigKey::Token, t));
        }
        return Ok((out, None));
    }
    if let Some(cmd) = get("credential_process") {
        // Run once now, so that a broken command fails the run before anything is read.
        let first = credential_process(&name, &cmd)?;
        let provider = ProcessCredentials {
            profile: name.clone(),
            command: cmd,
            cached: std::sync::Mutex::new(Some(first)),
        };
        return Ok((out, Some(provider)));
    }
    if explicit.is_some() {
        return Err(format!(
            "AWS_PROFILE={name}: the profile has no keys and no credential_process (SSO and \
             role profiles are resolved by the AWS CLI: run `aws configure export-credentials \
             --profile {name} --format env` and export its output)"
        ));
    }
    Ok((out, None))
}

/// What the shared profile gives the S3 builder: settings, and the credentials provider of
/// its `credential_process`, if it has one.
type AwsProfile = (Vec<(AmazonS3ConfigKey, String)>, Option<ProcessCredentials>);

/// Temporary credentials from a profile's `credential_process` are refreshed this long
/// before they expire (an assumed role's session lasts an hour by default; a backfill, more).
const REFRESH_BEFORE_EXPIRY: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Credentials from a profile's `credential_process`, run again when its answer is about to
/// expire (its `Expiration`), so that a run longer than the credentials' life keeps working.
struct ProcessCredentials {
    profile: String,
    command: String,
    cached: std::sync::Mutex<Option<ProcessAnswer>>,
}

impl std::fmt::Debug for ProcessCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The command may carry secrets in its arguments; show only the profile.
        write!(f, "ProcessCredentials(profile {})", self.profile)
    }
}

/// One answer of a `credential_process`.
struct ProcessAnswer {
    credential: Arc<object_store::aws::AwsCredential>,
    /// When it expires (`None`: long-term keys).
    expires: Option<chrono::DateTime<chrono::Utc>>,
}

impl ProcessAnswer {
    fn fresh(&self) -> bool {
        self.expires
            .is_none_or(|e| e - REFRESH_BEFORE_EXPIRY > chrono::Utc::now())
    }
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for ProcessCredentials {
    type Credential = object_store::aws::AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<Self::Credential>> {
        if let Some(a) = self.cached.lock().expect("credentials lock").as_ref() {
            if a.fresh() {
                return Ok(Arc::clone(&a.credential));
            }
        }
        let (profile, command) = (self.profile.clone(), self.command.clone());
        let answer = tokio::task::spawn_blocking(move || credential_process(&profile, &command))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: e.to_string().into(),
            })?
            .map_err(|why| object_store::Error::Generic {
                store: "S3",
                source: why.into(),
            })?;
        let credential = Arc::clone(&answer.credential);
        *self.cached.lock().expect("credentials lock") = Some(answer);
        Ok(credential)
    }
}

/// Runs a profile's `credential_process` (AWS's JSON, version 1). Its output is never shown.
fn credential_process(profile: &str, cmd: &str) -> Result<ProcessAnswer, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Process {
        access_key_id: String,
        secret_access_key: String,
        #[serde(default)]
        session_token: Option<String>,
        #[serde(default)]
        expiration: Option<String>,
    }
    let out = crate::shell::run(cmd, crate::shell::DEFAULT_TIMEOUT, crate::shell::OUTPUT_CAP)
        .map_err(|e| format!("profile {profile}: credential_process: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "profile {profile}: credential_process failed ({})",
            out.status
        ));
    }
    let p: Process = serde_json::from_slice(out.stdout.expose()).map_err(|_| {
        format!("profile {profile}: credential_process printed no AccessKeyId/SecretAccessKey JSON")
    })?;
    let expires = match &p.expiration {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    format!("profile {profile}: credential_process printed an Expiration that is not RFC 3339")
                })?
                .to_utc(),
        ),
    };
    Ok(ProcessAnswer {
        credential: Arc::new(object_store::aws::AwsCredential {
            key_id: p.access_key_id,
            secret_key: p.secret_access_key,
            token: p.session_token,
        }),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_and_keys() {
        let t = "[default]\naws_access_key_id = AKIA\n# c\n[profile lake]\nregion=eu-west-1\n";
        let ini = parse_ini(t);
        assert_eq!(ini["default"]["aws_access_key_id"], "AKIA");
        assert_eq!(ini["profile lake"]["region"], "eu-west-1");
    }

    #[test]
    fn store_urls_of_each_cloud_build_without_network() {
        // Building a client reads configuration only; no request is made.
        let s3 = s3("s3://bucket", "s3://bucket/x");
        assert!(s3.is_ok(), "{:?}", s3.err());
        // The project's own builders, from the environment as a user sets it (no other test
        // of this binary reads these variables).
        std::env::set_var("AZURE_STORAGE_ACCOUNT_KEY", "AAAA");
        let az = azure(
            "abfss://container@account.dfs.core.windows.net",
            "abfss://container@account.dfs.core.windows.net/x",
        );
        assert!(az.is_ok(), "{:?}", az.err());
        std::env::set_var(
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            r#"{"private_key":"x","client_email":"a@b"}"#,
        );
        let gs = gcs("gs://bucket", "gs://bucket/x");
        std::env::remove_var("GOOGLE_SERVICE_ACCOUNT_KEY");
        std::env::remove_var("AZURE_STORAGE_ACCOUNT_KEY");
        // An unusable key is refused at build time, naming the URL but not the key.
        let e = gs.expect_err("an unusable service-account key is refused");
        let shown = e.to_string();
        assert!(shown.contains("gs://bucket/x"), "{shown}");
        assert!(!shown.contains("private_key\":\"x"), "{shown}");
    }
}
