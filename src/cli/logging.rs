//! Logging set-up: `tracing` to stderr, as text or JSON lines (`--log-format`), `-v`/`-vv`
//! or `RUST_LOG` for the level; colour only when stderr is a terminal and `NO_COLOR` is unset.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ValueEnum;

use super::Cli;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, message and fields.
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Whether logs are JSON lines (then reports go through the log, not as free text).
pub(crate) fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

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
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => fmt.with_ansi(colour).init(),
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            fmt.json()
                .flatten_event(true)
                .with_current_span(false)
                .init();
        }
    }
}
