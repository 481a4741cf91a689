//! Logging set-up: `tracing` to stderr, `-v`/`-vv` or `RUST_LOG` for the level; colour only
//! when stderr is a terminal and `NO_COLOR` is not set.

use std::io::IsTerminal;

use super::Cli;

/// Initialises the global subscriber.
pub(crate) fn init(cli: &Cli) {
    let default = match cli.verbose {
        0 => "warn,euid_map=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}
