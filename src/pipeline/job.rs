//! The job skeleton every command runs the same way (`hash`, `map`, `refresh`, `optout`):
//!
//! ```text
//! Job::new(cfg, run) → open (lock, check or resume the output) ─┬─ complete: already_complete
//!                                                               └─ stages (stages.rs) → writer.finish
//!                                                                  → manifest → publish
//! ```
//!
//! **A part is committed** in one place, `output::DatasetWriter` (`commit`, when a part
//! reaches `--part-rows` and at `finish`); **the run is published** here, in
//! [`Job::publish`]: the manifest, then `_SUCCESS`, or the manifest marked `interrupted`.

use std::sync::Arc;
use std::time::Instant;

use crate::config::JobConfig;
use crate::error::Error;
use crate::input::{self, Position, ReadProgress, ResolvedColumns};
use crate::interrupt::Interrupt;
use crate::metrics::RunMetrics;
use crate::output::{
    self, DatasetWriter, DirLock, DirState, JobDescription, Manifest, OutputKind, RunState, Schema,
};
use crate::progress::Progress;
use crate::record::StatusCounts;

/// What a running job is stopped by and reports to. It travels beside the job's config, not
/// inside it: the config says what to do, these are the live run's handles.
#[derive(Debug, Clone, Default)]
pub struct RunHandles {
    /// Set when the run must stop (SIGINT/SIGTERM): it drains, commits and stops.
    pub interrupt: Interrupt,
    /// The run's live counters, for Prometheus metrics.
    pub metrics: Arc<RunMetrics>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Output rows per status, over the whole dataset (including resumed parts).
    pub counts: StatusCounts,
    /// Input rows covered.
    pub input_rows: u64,
    /// Wall time of this invocation, seconds.
    pub elapsed_s: f64,
    /// The manifest as written.
    pub manifest: Manifest,
    /// `--resume` found the run already complete and changed nothing.
    pub already_complete: bool,
}

/// An output directory locked and checked by [`Job::lock`], its writer not made yet.
pub(crate) struct Locked {
    lock: DirLock,
    /// Fresh, resumed or already complete.
    pub dir: DirState,
    parts: Vec<output::PartInfo>,
}

/// The output once opened: the writer (holding the directory's lock), whether the
/// directory was new, resumed or complete, and where reading starts.
pub(crate) struct Opened {
    pub writer: DatasetWriter,
    pub dir: DirState,
    pub start: Position,
}

/// A run of one command: its config, its handles, and when it started.
#[derive(Clone, Copy)]
pub(crate) struct Job<'a> {
    pub cfg: &'a JobConfig,
    pub run: &'a RunHandles,
    pub started: Instant,
}

impl<'a> Job<'a> {
    /// Starts the clock of a run.
    pub(crate) fn new(cfg: &'a JobConfig, run: &'a RunHandles) -> Job<'a> {
        Job {
            cfg,
            run,
            started: Instant::now(),
        }
    }

    /// A run whose clock started at `started` (before its config was settled).
    pub(crate) fn started_at(cfg: &'a JobConfig, run: &'a RunHandles, started: Instant) -> Job<'a> {
        Job { cfg, run, started }
    }

    /// The interrupt flag of the run.
    pub(crate) fn interrupt(&self) -> &Interrupt {
        &self.run.interrupt
    }

    /// Locks the output directory, checks it against the job (or the job it holds, on
    /// `--resume`) and lists its committed parts. The lock is taken before anything in the
    /// directory is read or written, and lives in the writer until the run ends. `sources`
    /// are the `source` values of the inputs, in order.
    ///
    /// # Errors
    /// Another run holds the directory, it holds another job or changed inputs, or I/O failed.
    pub(crate) fn open(
        &self,
        description: &JobDescription,
        schema: Schema,
        sources: Vec<String>,
    ) -> Result<Opened, Error> {
        Schema::check_kept_names(&schema.kept_columns())?;
        let locked = self.lock(description)?;
        self.writer(locked, schema, sources)
    }

    /// The first half of [`Job::open`]: the directory locked and checked, before the writer
    /// exists, so that a command can hold it before it spends a request (refresh's opt-out
    /// sweep).
    ///
    /// # Errors
    /// As [`Job::open`].
    pub(crate) fn lock(&self, description: &JobDescription) -> Result<Locked, Error> {
        let job = self.cfg;
        if let Some(p) = job.out_dir.local_path() {
            if p.exists() && !p.is_dir() {
                return Err(output::OutputError::NotADirectory {
                    path: job.out_dir.url(),
                }
                .into());
            }
        }
        let lock = DirLock::acquire(&job.out_dir, &description.command)?;
        let dir = output::prepare_dir(&job.out_dir, description, job.resume, job.restart)?;
        let parts = output::committed_parts(&job.out_dir)?;
        if dir == DirState::Resume && !job.quiet {
            let rows: u64 = parts.iter().map(|p| p.input_rows).sum();
            match parts.last() {
                Some(p) => tracing::info!(
                    part = p.part,
                    input_rows = rows,
                    "resuming after part {}, {rows} input rows committed",
                    p.part
                ),
                None => tracing::info!("resuming from the start: no part was committed"),
            }
        }
        self.run.metrics.set_command(&description.command);
        Ok(Locked { lock, dir, parts })
    }

    /// The second half of [`Job::open`]: the writer of a locked directory.
    ///
    /// # Errors
    /// Kept columns named like output columns.
    pub(crate) fn writer(
        &self,
        locked: Locked,
        schema: Schema,
        sources: Vec<String>,
    ) -> Result<Opened, Error> {
        let job = self.cfg;
        Schema::check_kept_names(&schema.kept_columns())?;
        let Locked { lock, dir, parts } = locked;
        let start = parts.last().map(|p| p.end).unwrap_or_default();
        let mut writer =
            DatasetWriter::new(&job.out_dir, schema, sources, job.part_rows, &parts, lock);
        writer.set_codec(job.compression);
        writer.report_to(self.run.metrics.rows());
        Ok(Opened { writer, dir, start })
    }

    /// The inputs' `source` values, in order.
    pub(crate) fn sources(&self) -> Vec<String> {
        self.cfg.inputs.iter().map(|f| f.given.clone()).collect()
    }

    /// Resolves the inputs' columns, describes the job and opens the output with the
    /// dataset of `kind` (kept columns as the first input has them): what `hash` and `map`
    /// do before their stages start.
    ///
    /// # Errors
    /// Columns cannot be resolved, an input cannot be read, or [`Job::open`] failed.
    pub(crate) fn prepare(
        &self,
        kind: OutputKind,
        command: &str,
        options: serde_json::Value,
    ) -> Result<(Vec<ResolvedColumns>, Opened), Error> {
        let columns = input::resolve_all(&self.cfg.inputs, &self.cfg.columns)?;
        if !self.cfg.quiet {
            input::announce_detected(&self.cfg.inputs, &self.cfg.columns, &columns);
        }
        let kept = columns
            .first()
            .map(|c| c.keep_types.clone())
            .unwrap_or_default();
        let description = self.cfg.describe(command, options)?;
        let opened = self.open(&description, Schema::new(kind, &kept), self.sources())?;
        Ok((columns, opened))
    }

    /// The summary of a run that `--resume` found complete: nothing is read or rewritten.
    ///
    /// # Errors
    /// The manifest or the parts' metadata cannot be read.
    pub(crate) fn already_complete(&self) -> Result<Summary, Error> {
        let out = &self.cfg.out_dir;
        let manifest = Manifest::read(out)?;
        let parts = output::committed_parts(out)?;
        let mut counts = StatusCounts::default();
        parts.iter().for_each(|p| counts.merge(&p.counts));
        Ok(Summary {
            counts,
            input_rows: parts.iter().map(|p| p.input_rows).sum(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            manifest,
            already_complete: true,
        })
    }

    /// The progress bar over the inputs' bytes (none with `--quiet`); the reader's counters
    /// also go to the run's metrics.
    pub(crate) fn progress(
        &self,
        read: &Arc<ReadProgress>,
        extra: Option<crate::progress::Extra>,
    ) -> Progress {
        self.run.metrics.attach_reader(Arc::clone(read));
        let total_bytes: u64 = self.cfg.inputs.iter().map(|f| f.size()).sum();
        Progress::start(self.cfg.quiet, total_bytes, Arc::clone(read), extra)
    }

    /// The manifest of what `writer` wrote for `command`.
    pub(crate) fn manifest(
        &self,
        command: &str,
        writer: &DatasetWriter,
        columns: &[ResolvedColumns],
    ) -> Manifest {
        Manifest::new(&self.cfg.inputs, command, writer, columns, self.started)
    }

    /// The last step of an interrupted run that must not publish what it wrote: the
    /// manifest marked `interrupted`, and [`Error::Interrupted`].
    ///
    /// # Errors
    /// Always: the interrupt, or writing the manifest failed.
    pub(crate) fn publish_interrupted(&self, mut manifest: Manifest) -> Result<Summary, Error> {
        manifest.status = RunState::Interrupted;
        output::write_json(&self.cfg.out_dir, output::MANIFEST_FILE, &manifest)?;
        Err(Error::Interrupted {
            signal: self.run.interrupt.signal().unwrap_or(15),
        })
    }

    /// Refuses to publish a run whose inputs are no longer the ones it started with (an
    /// export rewritten while it ran): its parts would splice two versions. Compared with the
    /// fingerprints its job file recorded at the start.
    ///
    /// # Errors
    /// [`InputError::ChangedDuringRun`](crate::input::InputError), or an input that cannot
    /// be read.
    fn check_inputs_unchanged(&self) -> Result<(), Error> {
        let Ok(text) = self.cfg.out_dir.join(output::JOB_FILE).read_all() else {
            return Ok(());
        };
        let Ok(job) = serde_json::from_slice::<JobDescription>(&text) else {
            return Ok(());
        };
        for (f, old) in self.cfg.inputs.iter().zip(&job.fingerprints) {
            let now = input::Fingerprint::of(f)?;
            if let Some(why) = old.differs(&now) {
                return Err(input::InputError::ChangedDuringRun {
                    path: f.given.clone(),
                    why,
                }
                .into());
            }
        }
        Ok(())
    }

    /// The last step of every job. A complete run writes the manifest and then `_SUCCESS`;
    /// an interrupted one writes the manifest marked `interrupted` and no `_SUCCESS`, and
    /// fails with [`Error::Interrupted`].
    ///
    /// # Errors
    /// Writing failed, or the run was interrupted.
    pub(crate) fn publish(
        &self,
        writer: &DatasetWriter,
        mut manifest: Manifest,
    ) -> Result<Summary, Error> {
        let out = &self.cfg.out_dir;
        if let Some(signal) = self.run.interrupt.signal() {
            manifest.status = RunState::Interrupted;
            output::write_json(out, output::MANIFEST_FILE, &manifest)?;
            return Err(Error::Interrupted { signal });
        }
        writer.check_lock()?;
        self.check_inputs_unchanged()?;
        manifest.publish(out)?;
        Ok(Summary {
            counts: writer.totals.clone(),
            input_rows: writer.input_rows,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            manifest,
            already_complete: false,
        })
    }
}
