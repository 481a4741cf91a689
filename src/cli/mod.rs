//! The command line (binary only: the library has no clap and no anyhow): clap definitions,
//! dispatch, logging set-up and exit codes. Each subcommand's file turns its flags into the
//! library's validated configuration and calls it.

mod client_args;
mod common;
pub(crate) mod credentials;
pub(crate) mod docs;
pub(crate) mod hash;
pub(crate) mod latest;
pub(crate) mod logging;
pub(crate) mod map;
pub(crate) mod normalize;
pub(crate) mod operator;
pub(crate) mod optout;
pub(crate) mod refresh;
mod summary;

use clap::{Parser, Subcommand};

/// Exit codes, documented in `--help` and the README.
pub(crate) mod exit {
    /// Every identity has a final status (mapped, opted out, invalid, missing…).
    pub(crate) const OK: u8 = 0;
    /// A run-level problem: bad configuration, unreadable input, refused credentials, an
    /// unreachable operator. No `_SUCCESS` is written.
    pub(crate) const FATAL: u8 = 1;
    /// Some identities failed after retries: the output is complete and marks them `failed`.
    pub(crate) const SOME_FAILED: u8 = 2;
    /// Usage error: unknown flag, missing argument, flags that do not go together.
    pub(crate) const USAGE: u8 = 64;

    /// A usage error found after parsing (flag values that do not go together).
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub(crate) struct Usage(pub(crate) String);

    /// The exit code of a failed run: 64 for usage errors, 128 + signal for an interrupted
    /// run (130 SIGINT, 143 SIGTERM), 1 otherwise.
    pub(crate) fn code_of(e: &anyhow::Error) -> u8 {
        if e.downcast_ref::<Usage>().is_some() {
            return USAGE;
        }
        match e.downcast_ref::<euid_map::Error>() {
            Some(euid_map::Error::Interrupted { signal }) => {
                u8::try_from(128 + signal).unwrap_or(FATAL)
            }
            _ => FATAL,
        }
    }
}

/// Fails with a usage error (exit 64).
macro_rules! usage {
    ($($t:tt)*) => {
        return Err(anyhow::Error::new($crate::cli::exit::Usage(format!($($t)*))))
    };
}
pub(crate) use usage;

/// `--version`: the version, the cargo features built in, the phone metadata and the API
/// versions spoken.
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let features: Vec<&str> = [("cloud", cfg!(feature = "cloud")), ("phones", cfg!(feature = "phones"))]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
        format!(
            "{}\ncommit: {}\nfeatures: {}\nphones: {}\ndataset schema: {}\nEUID API: POST /v3/identity/map, /v2/identity/map (--api v2), /v2/optout/status",
            env!("CARGO_PKG_VERSION"),
            env!("EUID_MAP_COMMIT"),
            if features.is_empty() { "none".to_string() } else { features.join(", ") },
            euid_map::normalize::METADATA_VERSION,
            euid_map::output::SCHEMA_VERSION,
        )
    })
}

/// Map emails and phone numbers to raw EUIDs through the EUID identity-map API.
#[derive(Debug, Parser)]
#[command(
    name = "euid-map",
    version,
    long_version = long_version(),
    about,
    long_about,
    after_help = "Exit codes:\n  0    every identity has a final status\n  1    fatal error (bad config, unreadable input, refused credentials, operator unreachable); no _SUCCESS\n  2    some identities failed after retries (or stayed stale); the output is complete, those rows say so; a --resume of such a finished run exits 2 again\n  3    latest: no finished night under ROOT yet\n  64   usage error (unknown flag, missing argument)\n  130  interrupted by SIGINT (Ctrl-C) after committing what was complete; rerun with --resume\n  143  interrupted by SIGTERM, likewise"
)]
pub(crate) struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Log format on stderr: text, or json (one object per line with timestamp, level,
    /// message and fields, for log pipelines).
    #[arg(long, value_enum, default_value_t = logging::LogFormat::Text, global = true)]
    pub(crate) log_format: logging::LogFormat,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Normalize and hash identities offline into a Parquet dataset (no network).
    Hash(hash::HashArgs),
    /// Map identities to raw EUIDs into a Parquet dataset.
    Map(map::MapArgs),
    /// Nightly job: remap only what is due in a previous output, carry the rest.
    Refresh(refresh::RefreshArgs),
    /// Run the local EUID operator emulator (never produces real EUIDs).
    Operator(operator::OperatorArgs),
    /// Credentials: `credentials check` tells whether a key and secret work for mapping.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Print the newest finished night under a folder of nightly outputs (for --state).
    Latest(latest::LatestArgs),
    /// Opt-out status of datasets holding only raw EUIDs (/v2/optout/status).
    Optout(optout::OptoutArgs),
    /// Normalize and hash one email or phone, as a job would, and print it (no network).
    Normalize(normalize::NormalizeArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// Print the man page (or write one per subcommand with --dir).
    Man(docs::ManArgs),
}

impl Command {
    /// Whether the command joins large tables on many threads (`refresh`, exact dedupe),
    /// where glibc's arenas each keep their own high-water mark: the binary caps them for
    /// these only, as the cap costs the default `map` 2-3 % of CPU
    /// (`scripts/bench_compare.sh`).
    pub(crate) fn caps_malloc_arenas(&self) -> bool {
        match self {
            Command::Refresh(_) => true,
            Command::Map(a) => a.exact(),
            _ => false,
        }
    }
}

/// Runs the parsed command; returns the process exit code.
///
/// # Errors
/// A fatal error, a usage error or an interrupt (see [`exit::code_of`]).
pub(crate) fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Hash(a) => hash::run(a),
        Command::Map(a) => map::run(a),
        Command::Refresh(a) => refresh::run(a),
        Command::Operator(a) => operator::run(a),
        Command::Credentials(c) => credentials::run(c),
        Command::Latest(a) => latest::run(a),
        Command::Optout(a) => optout::run(a),
        Command::Normalize(a) => normalize::run(a),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn malloc_arenas_are_capped_for_refresh_and_exact_dedupe_only() {
        let caps = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).expect("parses");
            cli.command.caps_malloc_arenas()
        };
        assert!(caps(&["euid-map", "refresh", "--state", "s", "-o", "o"]));
        assert!(caps(&[
            "euid-map", "map", "in.csv", "-o", "o", "--dedupe", "exact"
        ]));
        assert!(caps(&[
            "euid-map",
            "map",
            "in.csv",
            "-o",
            "o",
            "--distinct"
        ]));
        // The default map runs window (`DedupeMode::runs`): no cap on the default path.
        assert!(!caps(&["euid-map", "map", "in.csv", "-o", "o"]));
        assert!(!caps(&[
            "euid-map", "map", "in.csv", "-o", "o", "--dedupe", "window"
        ]));
        assert!(!caps(&["euid-map", "hash", "in.csv", "-o", "o"]));
    }

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
