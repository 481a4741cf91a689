//! Stopping a run cleanly: a flag the binary sets on SIGINT/SIGTERM and every stage reads.
//! The reader stops, in-flight batches get [`GRACE`] to finish, complete chunks are written
//! and committed, the manifest says `interrupted`, and `--resume` continues from there.
//!
//! The library never installs signal handlers by itself: the binary calls
//! [`Interrupt::listen_for_signals`]; an embedding program calls [`Interrupt::trigger`].

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How long in-flight batches may take to finish once a run is interrupted (Kubernetes
/// gives a pod 30 s between SIGTERM and SIGKILL by default; this leaves time to commit).
pub const GRACE: Duration = Duration::from_secs(10);

/// SIGINT's number (Ctrl-C).
pub const SIGINT: i32 = 2;
/// SIGTERM's number (`kill`, Kubernetes eviction, systemd stop).
pub const SIGTERM: i32 = 15;

#[derive(Default)]
struct Inner {
    signal: AtomicI32,
    notify: Notify,
}

/// A shared "stop now" flag with the signal that set it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<Inner>);

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Interrupt").field(&self.signal()).finish()
    }
}

impl Interrupt {
    /// Asks the run to stop, as if `signal` had arrived; the first call wins.
    pub fn trigger(&self, signal: i32) {
        if self
            .0
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.0.notify.notify_waiters();
        }
    }

    /// The signal that interrupted the run, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.0.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Whether the run was interrupted.
    pub fn is_triggered(&self) -> bool {
        self.signal().is_some()
    }

    /// Completes once the run is interrupted.
    pub async fn triggered(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Completes [`GRACE`] after the run is interrupted.
    pub async fn grace_over(&self) {
        self.triggered().await;
        tokio::time::sleep(GRACE).await;
    }

    /// Listens for SIGINT and SIGTERM on a thread of its own for the rest of the process:
    /// the first triggers this interrupt, a second one ends the process at once (exit
    /// 128 + signal), for a user who does not want to wait for the drain.
    ///
    /// # Errors
    /// The signal handlers could not be installed.
    pub fn listen_for_signals(&self) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let (int, term) = rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let (mut int, mut term) = (int, term);
                rt.block_on(async move {
                    loop {
                        let sig = tokio::select! {
                            _ = int.recv() => SIGINT,
                            _ = term.recv() => SIGTERM,
                        };
                        if me.is_triggered() {
                            std::process::exit(128 + sig);
                        }
                        tracing::warn!(
                            signal = sig,
                            "interrupted: finishing the batches in flight and committing what is complete (a second signal stops at once)"
                        );
                        me.trigger(sig);
                    }
                });
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_signal_wins_and_wakes_waiters() {
        let i = Interrupt::default();
        assert_eq!(i.signal(), None);
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.triggered().await }
        });
        i.trigger(SIGTERM);
        i.trigger(SIGINT);
        waiter.await.expect("woken");
        assert_eq!(i.signal(), Some(SIGTERM));
    }
}
