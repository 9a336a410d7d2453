//! A blocking call run on a thread of its own, awaited as a future: what `Tree::flush_async`
//! does where no tokio runtime is there to take it (sled 0.34 hands its flush to a thread
//! pool of its own), so that the executor thread polling the future never waits for a sync.
//!
//! Invariants: the call runs exactly once, on the new thread, or inline if no thread can be
//! started; its result (or its panic, resumed in `poll`) is handed over under one lock with the
//! waker of the latest poll, so a wake is never lost between a poll and the call's end.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

type Outcome<T> = std::thread::Result<T>;

struct Shared<T> {
    outcome: Option<Outcome<T>>,
    waker: Option<Waker>,
}

/// The future of a call started by [`run`].
pub(crate) struct OffThread<T> {
    shared: Arc<Mutex<Shared<T>>>,
}

/// Starts `f` on a new thread named `name`; the future resolves to its result. If no thread can
/// be started, `f` runs inline, at once.
pub(crate) fn run<T, F>(name: &str, f: F) -> OffThread<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let shared = Arc::new(Mutex::new(Shared { outcome: None, waker: None }));
    let theirs = shared.clone();
    // The call moves to the thread only if it starts: kept here until then, so that a failed
    // start still has it to run inline.
    let call = Arc::new(Mutex::new(Some(f)));
    let on_thread = call.clone();
    let started = std::thread::Builder::new().name(name.into()).spawn(move || {
        let Some(f) = on_thread.lock().take() else { return };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let waker = {
            let mut s = theirs.lock();
            s.outcome = Some(outcome);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    if started.is_err()
        && let Some(f) = call.lock().take()
    {
        shared.lock().outcome = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    }
    OffThread { shared }
}

impl<T> Future for OffThread<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.shared.lock();
        match s.outcome.take() {
            Some(Ok(v)) => Poll::Ready(v),
            Some(Err(panic)) => {
                drop(s);
                resume(panic)
            }
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn resume(panic: Box<dyn Any + Send>) -> ! {
    std::panic::resume_unwind(panic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Polls `fut` on this thread until it is ready, parking in between.
    pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    #[test]
    fn the_call_runs_on_another_thread_and_its_result_comes_back() {
        let here = std::thread::current().id();
        let (id, v) = block_on(run("off-thread-test", || (std::thread::current().id(), 7)));
        assert_ne!(id, here);
        assert_eq!(v, 7);
    }

    #[test]
    fn a_panic_of_the_call_is_resumed_where_it_is_awaited() {
        let r = std::panic::catch_unwind(|| block_on(run("off-thread-test", || -> u8 { panic!("in the call") })));
        let msg = r.err().and_then(|p| p.downcast_ref::<&str>().map(|s| s.to_string()));
        assert_eq!(msg.as_deref(), Some("in the call"));
    }
}
