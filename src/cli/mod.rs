//! The command line: clap definitions and dispatch. Each subcommand's file turns its flags
//! into validated configuration and calls the library. Exit codes: 0 done, 1 fatal error,
//! 2 some identities `failed` (map/refresh; the output is complete and marked).

mod common;
pub mod hash;
pub mod map;
pub mod operator;
pub mod refresh;

use clap::{Parser, Subcommand};

/// Map emails and phone numbers to raw EUIDs through the EUID identity-map API.
///
/// Exit codes: 0 every identity has a final status; 1 fatal error (bad config, unreadable
/// input, authentication refused; no _SUCCESS is written); 2 some identities failed after
/// retries (the output is complete, those rows have status "failed").
#[derive(Debug, Parser)]
#[command(name = "euid-map", version, about, long_about)]
pub struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Normalize and hash identities offline into a Parquet dataset (no network).
    Hash(hash::HashArgs),
    /// Map identities to raw EUIDs into a Parquet dataset.
    Map(map::MapArgs),
    /// Nightly job: remap only what is due in a previous output, carry the rest.
    Refresh(refresh::RefreshArgs),
    /// Run the local EUID operator emulator (never produces real EUIDs).
    Operator(operator::OperatorArgs),
}

/// Runs the parsed command; returns the process exit code.
///
/// # Errors
/// A fatal error (exit code 1).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Hash(a) => hash::run(a),
        Command::Map(a) => map::run(a),
        Command::Refresh(a) => refresh::run(a),
        Command::Operator(a) => operator::run(a),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn parsed_arguments_never_show_secrets_in_debug_output() {
        for args in [
            vec![
                "euid-map",
                "map",
                "in.csv",
                "-o",
                "out",
                "--env",
                "prod",
                "--api-key",
                "KEY-SEKRET-1",
                "--client-secret",
                "SEKRET-2",
            ],
            vec![
                "euid-map",
                "operator",
                "--api-key",
                "KEY-SEKRET-1",
                "--client-secret",
                "SEKRET-2",
            ],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            let shown = format!("{cli:?}");
            assert!(!shown.contains("SEKRET"), "{shown}");
            assert!(shown.contains("[redacted]"));
        }
    }
}
