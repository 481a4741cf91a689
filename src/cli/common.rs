//! Flags shared by the dataset commands (inputs and columns) and the end-of-run summary.

use std::path::PathBuf;

use clap::Args;

use euid_map::client::MAX_ITEMS_PER_REQUEST;
use euid_map::config::{JobConfig, MapSettings, DEFAULT_PART_ROWS};
use euid_map::input::{ColumnSpec, InputFile};
use euid_map::pipeline::RunHandles;
use euid_map::record::PhoneRegion;
use euid_map::secret::Secret;

use super::client_args::OperatorTarget;
pub(super) use super::summary::{finish, tell, Ended};
use super::usage;

/// Parses a flag or environment value straight into a [`Secret`] (clap `value_parser`), so
/// that even the parsed arguments' `Debug` output never shows it.
pub(super) fn parse_secret(s: &str) -> Result<Secret<String>, std::convert::Infallible> {
    Ok(Secret::new(s.to_string()))
}

/// Inputs, columns and output of a dataset command.
#[derive(Debug, Args)]
#[command(next_help_heading = "Input and output")]
pub(super) struct JobArgs {
    /// Input files: .csv, .tsv, .csv.gz, .tsv.gz or .parquet, local or object-store URLs
    /// (s3://, gs://, az://, abfss://, file://), read in order. A directory or prefix ending
    /// in / reads every such file under it, and a glob (s3://b/x/part-*.parquet) every match,
    /// in key order.
    #[arg(value_name = "INPUT")]
    inputs: Vec<String>,
    /// Output dataset directory or object-store prefix (part-NNNNN.parquet, _manifest.json,
    /// _SUCCESS).
    #[arg(short, long, value_name = "OUT_DIR")]
    output: String,
    /// Column with raw emails (repeatable: each column's identity gets its own output row).
    /// Default: every column named like email, email_address, secondary_email, email2, ….
    #[arg(long, value_name = "NAME")]
    email_col: Vec<String>,
    /// Column with raw phones (repeatable). Default: every column named like phone, mobile,
    /// work_phone, msisdn, …. E.164 is taken as given; other formats (`+44 (0)20 7946 0958`,
    /// `0049-30-1234567`, or national `06 12 34 56 78` with a region) are made E.164 by
    /// libphonenumber's rules.
    #[arg(long, value_name = "NAME")]
    phone_col: Vec<String>,
    /// Region for phones written in national format: ISO 3166-1 alpha-2, any case (FR, de).
    /// A number written with its own country code (+33…, or the region's 00 prefix) keeps it.
    #[arg(long, value_name = "CC", value_parser = parse_phone_region)]
    phone_region: Option<PhoneRegion>,
    /// Column holding each row's region for national-format phones (alpha-2, any case); an
    /// empty cell falls back to --phone-region, an unknown code makes the phone invalid.
    /// Once for every phone column, or once per phone column (paired in order).
    #[arg(long, value_name = "NAME")]
    phone_region_col: Vec<String>,
    /// Column with email hashes: base64 SHA-256 (44 chars) or hex (64). Repeatable.
    #[arg(long, value_name = "NAME")]
    email_hash_col: Vec<String>,
    /// Column with phone hashes: base64 SHA-256 (44 chars) or hex (64). Repeatable.
    #[arg(long, value_name = "NAME")]
    phone_hash_col: Vec<String>,
    /// Column to copy to the output unchanged, with its type (repeatable), e.g. a customer id.
    #[arg(long = "keep-col", value_name = "NAME")]
    keep_col: Vec<String>,
    /// CSV field delimiter: one ASCII character, or `tab` / `\t` (default , or TAB for .tsv).
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// Quoting of CSV and TSV inputs: `double` (RFC 4180: "…" with "" inside) or `none`,
    /// for the text format of PostgreSQL's COPY … TO and MySQL's INTO OUTFILE (a quote is
    /// an ordinary character, \N is null, backslash escapes such as \t are decoded).
    #[arg(long, value_name = "MODE", default_value = "double", value_parser = ["double", "none"])]
    quote: String,
    /// Mode of the files written on local disk (octal; directories get search where files
    /// get read). The default keeps hashed emails and raw EUIDs, personal data, to the
    /// owner; 640 shares them with the group. Object stores keep their own access control.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
    output_mode: u32,
    /// A quoted CSV field spanning more lines than this (or more KiB) is taken for a stray
    /// quote and stops the run; raise it for exports with long multi-line notes.
    #[arg(long, value_name = "LINES", default_value_t = euid_map::input::DEFAULT_MAX_QUOTED_FIELD_LINES)]
    max_quoted_field_lines: u64,
    /// Codec of the output's Parquet parts: snappy (fast; Spark's and pyarrow's default),
    /// zstd (smaller; Polars' and DuckDB's default), gzip or none.
    #[arg(long, value_name = "CODEC", default_value = "snappy", value_parser = parse_codec)]
    compression: euid_map::output::Codec,
    /// Continue an interrupted run in OUT_DIR from its last committed part. On a finished
    /// run it sends nothing and exits as that run did (2 while it holds failed or stale
    /// identities).
    #[arg(long)]
    resume: bool,
    /// Start OUT_DIR over: the parts of a run that did not finish are discarded (a finished
    /// run is refused).
    #[arg(long, conflicts_with = "resume")]
    restart: bool,
    /// With --resume: when an input changed since the unfinished run in OUT_DIR started (an
    /// export rewritten between a failed attempt and its retry), start over instead of
    /// refusing.
    #[arg(long, requires = "resume")]
    restart_if_changed: bool,
    /// Output rows per part file (each part is a resume point).
    #[arg(long, default_value_t = DEFAULT_PART_ROWS, value_name = "ROWS")]
    part_rows: u64,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    pub(super) metrics: MetricsArgs,
}

/// Prometheus metrics flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "Metrics")]
pub(super) struct MetricsArgs {
    /// Push metrics to this Prometheus Pushgateway (job="euid-map") at the end of the run,
    /// success or failure, and every 30 s during it.
    #[arg(long, value_name = "URL")]
    metrics_push: Option<String>,
    /// Extra label KEY=VALUE for the metrics (repeatable): a grouping label on the
    /// Pushgateway, a sample label in the textfile.
    #[arg(long, value_name = "KEY=VALUE")]
    metrics_label: Vec<String>,
    /// Write the metrics at the end of the run in the node_exporter textfile format to
    /// PATH (atomically: temporary file, then rename).
    #[arg(long, value_name = "PATH")]
    metrics_file: Option<PathBuf>,
}

impl MetricsArgs {
    fn sinks(&self) -> anyhow::Result<euid_map::metrics::Sinks> {
        let mut labels = Vec::new();
        for l in &self.metrics_label {
            let Some((k, v)) = l.split_once('=') else {
                usage!("--metrics-label takes KEY=VALUE, got {l:?}");
            };
            let valid = k
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.starts_with("__")
                && k != "job";
            if !valid {
                usage!("--metrics-label: {k:?} is not a usable Prometheus label name");
            }
            labels.push((k.to_string(), v.to_string()));
        }
        Ok(euid_map::metrics::Sinks {
            push: self.metrics_push.clone(),
            file: self.metrics_file.clone(),
            labels,
        })
    }
}

/// Names where the key and secret came from on the errors they cause (401, a secret that
/// does not match the key): `--api-key`, a command, a file, `EUID_API_KEY`, a profile.
pub(super) fn name_credentials<T>(
    r: Result<T, euid_map::Error>,
    source: &str,
) -> anyhow::Result<T> {
    r.map_err(|e| {
        let ours = matches!(
            e,
            euid_map::Error::Client(
                euid_map::client::ClientError::Unauthorized
                    | euid_map::client::ClientError::WrongSecret
            )
        );
        let e = anyhow::Error::new(e);
        if ours {
            e.context(format!("with the key and secret from {source}"))
        } else {
            e
        }
    })
}

/// Runs a dataset job with its metrics: periodic pushes while it runs, and a final page
/// with the exit code however it ends, setup and usage errors included (everything after
/// the metrics flags themselves parse). `run` builds the job with the metrics it is given.
/// The last-success time is set only when this run wrote `_SUCCESS` (exit 0 or 2), and
/// carried forward otherwise.
pub(super) fn with_metrics(
    args: &MetricsArgs,
    run: impl FnOnce(RunHandles) -> anyhow::Result<Ended>,
) -> anyhow::Result<u8> {
    let sinks = args.sinks()?;
    let handles = RunHandles::default();
    let reporter =
        euid_map::metrics::Reporter::start(std::sync::Arc::clone(&handles.metrics), sinks);
    let result = run(handles);
    let (code, success) = match &result {
        Ok(e) => (
            e.code,
            e.wrote_success && matches!(e.code, super::exit::OK | super::exit::SOME_FAILED),
        ),
        Err(e) => (super::exit::code_of(e), false),
    };
    reporter.finish(code, success);
    result.map(|e| e.code)
}

impl JobArgs {
    /// Validates the flags.
    pub(super) fn to_config(&self) -> anyhow::Result<JobConfig> {
        if self.inputs.is_empty() {
            usage!("give at least one INPUT file");
        }
        self.to_config_any()
    }

    /// Validates the flags; INPUT may be empty (`refresh` without today's export).
    pub(super) fn to_config_any(&self) -> anyhow::Result<JobConfig> {
        euid_map::storage::mode::set_output_mode(self.output_mode)
            .map_err(|e| anyhow::Error::new(super::exit::Usage(e)))?;
        let delimiter = self.delimiter;
        euid_map::storage::check_output_outside(&self.inputs, &self.output)?;
        let inputs = euid_map::storage::expand_inputs(&self.inputs).map_err(|e| match e {
            e if e.is_not_found() => anyhow::anyhow!("{e}: no such file"),
            e => e.into(),
        })?;
        let out_dir = euid_map::storage::Location::parse(&self.output)?;
        Ok(JobConfig {
            inputs: inputs
                .into_iter()
                .map(|(given, loc)| {
                    let f = InputFile::at(&given, loc, delimiter)
                        .with_max_quoted_lines(self.max_quoted_field_lines);
                    if self.quote == "none" {
                        f.without_quoting()
                    } else {
                        f
                    }
                })
                .collect(),
            columns: ColumnSpec {
                email: self.email_col.clone(),
                phone: self.phone_col.clone(),
                email_hash: self.email_hash_col.clone(),
                phone_hash: self.phone_hash_col.clone(),
                keep: self.keep_col.clone(),
                phone_region_col: self.phone_region_col.clone(),
                phone_region: self.phone_region,
                no_identity: false,
            },
            out_dir,
            resume: self.resume,
            restart: if self.restart {
                euid_map::output::Restart::Always
            } else if self.restart_if_changed {
                euid_map::output::Restart::IfChanged
            } else {
                euid_map::output::Restart::Never
            },
            part_rows: self.part_rows,
            quiet: self.quiet,
            compression: self.compression,
        })
    }
}

/// `--phone-region`: an alpha-2 code the phone metadata knows.
pub(super) fn parse_phone_region(s: &str) -> Result<PhoneRegion, String> {
    euid_map::normalize::phone_region(s.trim()).ok_or_else(|| {
        if cfg!(feature = "phones") {
            format!("{s:?} is not an ISO 3166-1 alpha-2 region the phone metadata knows (FR, DE, GB, US, …)")
        } else {
            "this build has no phone formats (built without the `phones` feature)".to_string()
        }
    })
}

/// `--compression`: a codec every engine reads.
fn parse_codec(s: &str) -> Result<euid_map::output::Codec, String> {
    euid_map::output::Codec::parse(s)
        .ok_or_else(|| format!("{s:?} is not a codec: snappy, zstd, gzip or none"))
}

/// `--output-mode`: an octal mode such as 600 or 0640.
fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode such as 600 or 640"))
}

/// `--delimiter`: one ASCII character, or `tab`, `\t` (as typed in a shell) for TAB.
fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "TAB" | "\\t" | "\t" => Ok(b'\t'),
        _ => match s.as_bytes() {
            [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => Ok(*b),
            _ => Err(format!(
                "expected one ASCII character such as , ; | or `tab`, got {s:?}"
            )),
        },
    }
}

/// Batching flags shared by `map` and `refresh`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Tuning")]
pub(super) struct Tuning {
    /// Identities per request (at most 5,000, the documented maximum).
    #[arg(long, default_value_t = MAX_ITEMS_PER_REQUEST)]
    batch_size: usize,
    /// Memory for remembered answers, MiB: a repeated identity is answered from it instead
    /// of being sent again. Each answer costs 144 bytes: the default 32 MiB holds about
    /// 230,000, the most recent per slot; a repeat seen after its answer was replaced is
    /// simply sent again, never lost. 0 turns it off.
    #[arg(long, default_value_t = euid_map::mapper::DEFAULT_DEDUPE_MIB, value_name = "MIB")]
    dedupe_memory: usize,
}

impl Tuning {
    /// Validates the flags and completes the mapping settings.
    pub(super) fn settings(&self, target: OperatorTarget) -> anyhow::Result<MapSettings> {
        if !(1..=MAX_ITEMS_PER_REQUEST).contains(&self.batch_size) {
            usage!("--batch-size must be between 1 and {MAX_ITEMS_PER_REQUEST}");
        }
        if self.dedupe_memory > euid_map::mapper::MAX_DEDUPE_MIB {
            usage!(
                "--dedupe-memory must be at most {} MiB (64 GiB)",
                euid_map::mapper::MAX_DEDUPE_MIB
            );
        }
        Ok(MapSettings {
            client: target.client,
            env: target.env,
            embedded_operator: target.embedded,
            batch_size: self.batch_size,
            cache_bytes: self.dedupe_memory.saturating_mul(1 << 20),
            dedupe: Default::default(),
            tmp_dir: None,
            distinct: false,
        })
    }
}

/// Mapping settings without batching flags (`optout` sends raw ids, not identities).
pub(super) fn client_settings(target: OperatorTarget) -> MapSettings {
    MapSettings {
        client: target.client,
        env: target.env,
        embedded_operator: target.embedded,
        batch_size: MAX_ITEMS_PER_REQUEST,
        cache_bytes: 0,
        dedupe: euid_map::config::DedupeMode::Window,
        tmp_dir: None,
        distinct: false,
    }
}

/// Starts listening for SIGINT/SIGTERM: the first one interrupts `job` cleanly.
pub(super) fn handle_signals(run: &RunHandles) -> anyhow::Result<()> {
    run.interrupt
        .listen_for_signals()
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))
}
