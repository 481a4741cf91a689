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
        why: super::scrub(&super::error_chain(&e)),
    }
}

/// The S3 client of a bucket.
pub(super) fn s3(base: &str, shown: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    crate::tls::install_provider();
    let mut b = AmazonS3Builder::from_env().with_url(base);
    let profile = aws_profile().map_err(|why| StorageError::Config {
        url: shown.to_string(),
        why,
    })?;
    for (k, v) in profile {
        b = b.with_config(k, v);
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
fn aws_profile() -> Result<Vec<(AmazonS3ConfigKey, String)>, String> {
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
            None => Ok(Vec::new()),
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
        return Ok(out); // the environment's keys come first
    }
    if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
        out.push((AmazonS3ConfigKey::AccessKeyId, id));
        out.push((AmazonS3ConfigKey::SecretAccessKey, secret));
        if let Some(t) = get("aws_session_token") {
            out.push((AmazonS3ConfigKey::Token, t));
        }
        return Ok(out);
    }
    if let Some(cmd) = get("credential_process") {
        let (id, secret, token) = credential_process(&name, &cmd)?;
        out.push((AmazonS3ConfigKey::AccessKeyId, id));
        out.push((AmazonS3ConfigKey::SecretAccessKey, secret));
        if let Some(t) = token {
            out.push((AmazonS3ConfigKey::Token, t));
        }
        return Ok(out);
    }
    if explicit.is_some() {
        return Err(format!(
            "AWS_PROFILE={name}: the profile has no keys and no credential_process (SSO and \
             role profiles are resolved by the AWS CLI: run `aws configure export-credentials \
             --profile {name} --format env` and export its output)"
        ));
    }
    Ok(out)
}

/// Runs a profile's `credential_process` (AWS's JSON, version 1). Its output is never shown.
fn credential_process(
    profile: &str,
    cmd: &str,
) -> Result<(String, String, Option<String>), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Process {
        access_key_id: String,
        secret_access_key: String,
        #[serde(default)]
        session_token: Option<String>,
    }
    let out = crate::shell::run(cmd, crate::shell::DEFAULT_TIMEOUT, 64 * 1024)
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
    Ok((p.access_key_id, p.secret_access_key, p.session_token))
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
        let az = MicrosoftAzureBuilder::new()
            .with_url("abfss://container@account.dfs.core.windows.net")
            .with_access_key("AAAA")
            .build();
        assert!(az.is_ok(), "{:?}", az.err());
        let gs = GoogleCloudStorageBuilder::new()
            .with_url("gs://bucket")
            .with_service_account_key(r#"{"private_key":"x","client_email":"a@b"}"#)
            .build();
        // An unusable key is refused at build time, naming the problem but not the key.
        if let Err(e) = gs {
            assert!(!e.to_string().contains("private_key\":\"x"), "{e}");
        }
    }
}
