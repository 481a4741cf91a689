//! The bridge between the synchronous stages (reader and writer threads) and the async
//! object-store clients: one small tokio runtime of its own, started on first use, and a
//! blocking wait that is safe from any thread, inside another runtime or not.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// Worker threads of the storage runtime: object-store I/O is mostly waiting.
const WORKERS: usize = 2;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("storage")
            .enable_all()
            .build()
            .expect("the storage runtime starts")
    })
}

/// Wakes the waiting thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` to completion on this thread, parking between wake-ups. Only for futures that
/// need no reactor of their own (a join handle, a channel receive).
pub(crate) fn wait<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A handle on the storage runtime (for readers that spawn their own I/O).
pub(crate) fn handle() -> tokio::runtime::Handle {
    runtime().handle().clone()
}

/// Runs `f` on the storage runtime and waits for it. A panic in `f` is resumed here.
pub(crate) fn block<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match wait(runtime().spawn(f)) {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("storage task cancelled: {e}"),
    }
}

/// Spawns `f` on the storage runtime without waiting.
pub(crate) fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(f)
}

/// Waits for a task spawned with [`spawn`].
pub(crate) fn join<T>(h: tokio::task::JoinHandle<T>) -> T {
    match wait(h) {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("storage task cancelled: {e}"),
    }
}

/// Receives from a tokio channel on a plain thread (or inside another runtime).
pub(crate) fn recv<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> Option<T> {
    wait(rx.recv())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_works_inside_another_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let v = rt.block_on(async { block(async { 40 + 2 }) });
        assert_eq!(v, 42);
    }

    #[test]
    fn recv_gets_what_a_storage_task_sends() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let h = spawn(async move {
            for i in 0..3 {
                tx.send(i).await.expect("receiver alive");
            }
        });
        let got: Vec<i32> = std::iter::from_fn(|| recv(&mut rx)).collect();
        join(h);
        assert_eq!(got, vec![0, 1, 2]);
    }
}
