//! The `euid-map` binary: parse flags, set up logging and signal handling, run the library,
//! and map the outcome to an exit code (see [`cli::EXIT_CODES`]).

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{exit, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with exit 0; every other parse error is a usage
            // error, 64 (EX_USAGE) — never clap's 2, which here means "some identities failed".
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    if cli.command.caps_malloc_arenas() {
        // Before any thread starts (parsing starts none): see the crate's docs.
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        euid_map_malloc::limit_arenas(euid_map_malloc::arenas_for(cores));
    }
    cli::logging::init(&cli);
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit::code_of(&e);
            if cli::logging::json() {
                tracing::error!(exit_code = code, error = %format!("{e:#}"), "run failed");
            } else {
                match e.downcast_ref::<euid_map::Error>() {
                    Some(euid_map::Error::Interrupted { .. }) => eprintln!("{e}"),
                    _ => eprintln!("euid-map: error: {e:#}"),
                }
            }
            ExitCode::from(code)
        }
    }
}
