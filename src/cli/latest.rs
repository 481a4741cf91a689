//! `euid-map latest ROOT`: the newest finished night under a folder of nightly outputs, for
//! recipes to pass as `refresh --state` (a failed or interrupted night is never chosen).

use clap::Args;

/// Arguments of `euid-map latest`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map latest /data/euid\n  prev=$(euid-map latest s3://lake/euid/ --before \"$(date -u +%F)\")\n\nExit codes: 0 printed a dataset; 3 ROOT is readable and holds no finished night (a first night); 1 ROOT does not exist or cannot be listed, or a night's metadata cannot be read (never taken for a first night); 64 usage error."
)]
pub(crate) struct LatestArgs {
    /// Folder or prefix holding one dataset per night (e.g. /data/euid/2026-11-27).
    #[arg(value_name = "ROOT")]
    root: String,
    /// Only names sorting before this one (tonight's own folder, when a night is run again).
    #[arg(long, value_name = "NAME")]
    before: Option<String>,
}

/// Exit code of `latest` when no night has finished yet (a first night), told apart from
/// an error (1), which must never be taken for "start afresh".
pub(super) const NONE_FINISHED: u8 = 3;

/// Prints the newest finished dataset under ROOT on stdout.
#[allow(clippy::print_stdout)]
pub(super) fn run(a: LatestArgs) -> anyhow::Result<u8> {
    let root = euid_map::storage::Location::parse(&a.root)?;
    match euid_map::output::latest_complete(&root, a.before.as_deref())? {
        Some(dir) => {
            println!("{}", dir.url());
            Ok(super::exit::OK)
        }
        None => {
            eprintln!(
                "euid-map: no finished dataset (with _SUCCESS) under {}{}",
                a.root,
                a.before
                    .as_deref()
                    .map(|b| format!(" before {b:?}"))
                    .unwrap_or_default()
            );
            Ok(NONE_FINISHED)
        }
    }
}
