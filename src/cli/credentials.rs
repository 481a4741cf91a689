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
}

/// Arguments of `euid-map credentials check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    client: ClientArgs,
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
    let CredentialsCommand::Check(a) = cmd;
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut cfg = target.client.clone();
        let local = if target.embedded {
            let op = euid_map::operator::spawn_local(euid_map::operator::Config::demo(1)).await?;
            cfg.base_url = op.base_url();
            Some(op)
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
            Ok(super::exit::OK)
        }
        Err(e) => {
            println!("verdict:     FAILED: {}", explain(&e, &target.env));
            Ok(super::exit::FATAL)
        }
    }
}
