//! `euid-map credentials check`: one identity-map request with the documented opt-out test
//! identities, to tell whether a key and secret work for mapping before a nightly job needs
//! them. Prints what it found, never the secret.

use clap::{Args, Subcommand};

use super::client_args::ClientArgs;
use euid_map::client::{Client, ClientError};
use euid_map::record::{IdentityKind, MapOutcome};

/// `euid-map credentials …`.
#[derive(Debug, Subcommand)]
pub(crate) enum CredentialsCommand {
    /// Check that a key and secret work for mapping: one request with the documented
    /// opt-out test identities. Exit 0 when they work, 1 with the reason when not.
    Check(CheckArgs),
    /// List, per API key, the datasets under ROOT... whose manifests it produced: what a key
    /// rotation touches. Reads only manifests (never a key or a secret).
    Usage(UsageArgs),
}

/// Arguments of `euid-map credentials check`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map credentials check --env integ\n  euid-map credentials check --profile prod --max-key-age-days 300\n\nEnvironment: EUID_API_KEY, EUID_CLIENT_SECRET, EUID_CREDENTIALS_FILE.\nExit codes: 0 the key and secret work; 1 they do not (the reason is printed); 64 usage error."
)]
#[command(
    mut_arg("concurrency", |a| a.hide(true)),
    mut_arg("rps", |a| a.hide(true)),
    mut_arg("max_retries", |a| a.hide(true))
)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Warn when the profile's `issued` date is older than this many days (EUID asks for
    /// yearly rotation, and at once when a key may be compromised).
    #[arg(long, value_name = "DAYS", default_value_t = euid_map::credentials::DEFAULT_MAX_KEY_AGE_DAYS)]
    max_key_age_days: i64,
}

/// Arguments of `euid-map credentials usage`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map credentials usage /data/euid s3://lake/euid/\n\nExit codes: 0 listed; 1 a ROOT cannot be read; 64 usage error."
)]
pub(crate) struct UsageArgs {
    /// Folders or prefixes of datasets (a dataset itself, or one per night below it).
    #[arg(required = true, value_name = "ROOT")]
    roots: Vec<String>,
}

/// The opt-out test identities as the operator's code has them (and so the emulator):
/// `optout@example.com` and `+00000000000` (`+00000000002` is a refresh test identity).
fn test_identities() -> Vec<(IdentityKind, euid_map::record::IdentityHash)> {
    let mut ids = Vec::new();
    if let Ok(h) = euid_map::normalize::hash_email("optout@example.com") {
        ids.push((IdentityKind::Email, h));
    }
    if let Ok(h) = euid_map::normalize::hash_phone("+00000000000") {
        ids.push((IdentityKind::Phone, h));
    }
    ids
}

/// What a failed check means, for a person.
fn explain(e: &ClientError, env: &str) -> String {
    match e {
        ClientError::Unauthorized => format!(
            "the operator refused the API key (401): it is wrong, revoked, a key of another environment than {env}, or lacks the mapper permission"
        ),
        ClientError::WrongSecret | ClientError::Decrypt => {
            "the client secret does not match the API key (the operator could not decrypt the request)".to_string()
        }
        ClientError::ClockSkew => e.to_string(),
        other => format!("the request failed: {other}"),
    }
}

/// Runs the check; prints a report on stdout.
#[allow(clippy::print_stdout)]
pub(crate) fn run(cmd: CredentialsCommand) -> anyhow::Result<u8> {
    let a = match cmd {
        CredentialsCommand::Check(a) => a,
        CredentialsCommand::Usage(u) => return usage(u),
    };
    let target = a.client.to_config()?;
    let key_id = euid_map::credentials::key_id(&target.client.api_key);
    println!("environment: {}", target.env);
    println!(
        "endpoint:    {}",
        if target.embedded {
            "embedded local operator".to_string()
        } else {
            format!("{}/v3/identity/map", target.client.base_url)
        }
    );
    println!("key:         {key_id} (from {})", target.source);
    let mut old_key = false;
    if let (Some(issued), Some(age)) = (target.issued, target.key_age_days()) {
        println!("issued:      {issued} ({age} days ago)");
        old_key = age > a.max_key_age_days;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut cfg = target.client.clone();
        let local = if target.embedded {
            Some(euid_map::pipeline::start_embedded(&mut cfg).await?)
        } else {
            None
        };
        let client = Client::new(&cfg)?;
        let probe = client.probe(&test_identities()).await;
        if let Some(op) = local {
            op.stop().await;
        }
        anyhow::Ok(probe)
    })?;
    match result {
        Ok(p) => {
            println!("round trip:  {} ms", p.rtt.as_millis());
            println!(
                "clock skew:  {:+.1} s (the operator's clock minus this machine's; requests are refused beyond about 60 s)",
                p.skew_ms as f64 / 1000.0
            );
            let optouts = p
                .answers
                .iter()
                .filter(|o| matches!(o, MapOutcome::Optout { .. }))
                .count();
            println!(
                "answers:     {} of {} test identities answered opted out",
                optouts,
                p.answers.len()
            );
            println!(
                "verdict:     OK: this key and secret work for mapping in {}",
                target.env
            );
            if old_key {
                println!(
                    "warning:     the key is older than {} days: rotate it (EUID asks for yearly rotation); `euid-map credentials usage ROOT` lists the datasets it produced",
                    a.max_key_age_days
                );
            }
            Ok(super::exit::OK)
        }
        Err(e) => {
            println!("verdict:     FAILED: {}", explain(&e, &target.env));
            Ok(super::exit::FATAL)
        }
    }
}

/// Prints, per key id, the datasets whose manifests it produced.
#[allow(clippy::print_stdout)]
fn usage(a: UsageArgs) -> anyhow::Result<u8> {
    use euid_map::output::{Manifest, MANIFEST_FILE};
    use euid_map::storage::Location;
    let mut by_key: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for root in &a.roots {
        let root = Location::parse(root)?;
        let mut dirs = vec![root.clone()];
        let mut names = root.list_names()?;
        names.sort();
        dirs.extend(
            names
                .into_iter()
                .filter(|n| !n.starts_with('.') && !n.starts_with('_') && !n.contains('.'))
                .map(|n| root.join(&n)),
        );
        for dir in dirs {
            if !dir.join(MANIFEST_FILE).exists().unwrap_or(false) {
                continue;
            }
            let Ok(m) = Manifest::read(&dir) else {
                continue;
            };
            let Some(key) = m.key_id.clone() else {
                continue; // `hash` output: no key
            };
            by_key
                .entry(key)
                .or_default()
                .push((dir.url(), m.finished_at.clone()));
        }
    }
    if by_key.is_empty() {
        println!("no dataset with a key id under {}", a.roots.join(", "));
    }
    for (key, datasets) in by_key {
        println!("{key}: {} dataset(s)", datasets.len());
        for (d, at) in datasets {
            println!("  {d}  (finished {at})");
        }
    }
    Ok(super::exit::OK)
}
