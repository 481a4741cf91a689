//! Progress for people watching a run: an indicatif bar on a terminal, a log line every few
//! seconds otherwise, nothing with `--quiet`. It samples atomic counters; the pipeline never
//! sends per-row messages. Raw identifiers never reach it.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::input::ReadProgress;

/// How often the bar redraws.
const BAR_TICK: Duration = Duration::from_millis(250);
/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Extra text for the progress line (requests/s, retries…), sampled at each tick.
pub type Extra = Box<dyn Fn() -> String + Send>;

/// A running progress reporter; stop it with [`Progress::finish`].
pub struct Progress {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting, unless `quiet`.
    pub fn start(
        quiet: bool,
        total_bytes: u64,
        read: Arc<ReadProgress>,
        extra: Option<Extra>,
    ) -> Progress {
        if quiet {
            return Progress {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = channel::<()>();
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let started = Instant::now();
                let line = || {
                    let rows = read.rows.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    let more = extra.as_ref().map(|f| f()).unwrap_or_default();
                    format!("{rows} rows read ({:.0} rows/s){more}", rows as f64 / secs)
                };
                if tty {
                    let bar = ProgressBar::with_draw_target(
                        Some(total_bytes.max(1)),
                        ProgressDrawTarget::stderr(),
                    );
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{elapsed_precise} [{wide_bar}] {percent:>3}% ETA {eta} {msg}",
                        )
                        .expect("the template is valid"),
                    );
                    loop {
                        bar.set_position(read.bytes.load(Ordering::Relaxed).min(total_bytes));
                        bar.set_message(line());
                        if !matches!(rx.recv_timeout(BAR_TICK), Err(RecvTimeoutError::Timeout)) {
                            break;
                        }
                    }
                    bar.finish_and_clear();
                } else {
                    while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(LOG_EVERY) {
                        let done = read.bytes.load(Ordering::Relaxed) as f64;
                        let pct = if total_bytes > 0 {
                            100.0 * done / total_bytes as f64
                        } else {
                            0.0
                        };
                        tracing::info!("progress {pct:.0}%: {}", line());
                    }
                }
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        Progress {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops reporting and clears the bar.
    pub fn finish(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
