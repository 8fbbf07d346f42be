//! pglock's own I/O runtime.
//!
//! Connections checked out from a multi-thread tokio runtime are opened and
//! driven on that runtime (`Config::drive_on_caller_runtime`). All others — from
//! current-thread runtimes, plain threads (the sync API), or aliases that opt out —
//! are opened and driven on this small dedicated runtime, so they stay usable from
//! any runtime and after the runtime that first used them has shut down. It is
//! also where heartbeats, release and clean-up work run when a guard is dropped
//! outside any runtime.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pglock-io")
            .enable_all()
            .build()
            .expect("pglock could not start its I/O runtime")
    })
}

/// The handle of pglock's I/O runtime.
pub(crate) fn handle() -> &'static Handle {
    runtime().handle()
}

thread_local! {
    /// How many `block_on` calls this thread is inside.
    static BLOCKING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

struct Unmark;

impl Drop for Unmark {
    fn drop(&mut self) {
        BLOCKING.with(|b| b.set(b.get() - 1));
    }
}

/// Whether work may rely on the current thread's tokio runtime (its timers and
/// I/O): there is one, and this thread is not parked in [`block_on`], which would
/// stall a current-thread runtime's driver.
pub(crate) fn caller_runtime_usable() -> bool {
    BLOCKING.with(std::cell::Cell::get) == 0 && Handle::try_current().is_ok()
}

/// Runs `fut` on the I/O runtime and returns a handle to await its result.
pub(crate) fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(fut)
}

/// `tokio::time::timeout`, also where the caller's runtime cannot run timers
/// (none is current, or [`block_on`] is blocking its thread): the timer then
/// runs on pglock's runtime.
pub(crate) fn timeout<F: Future>(d: std::time::Duration, fut: F) -> tokio::time::Timeout<F> {
    let _context = (!caller_runtime_usable()).then(|| handle().enter());
    tokio::time::timeout(d, fut)
}

/// `tokio::time::sleep`, with its timer on pglock's runtime where the caller's
/// cannot run timers (as [`timeout`]).
pub(crate) fn sleep(d: std::time::Duration) -> tokio::time::Sleep {
    let _context = (!caller_runtime_usable()).then(|| handle().enter());
    tokio::time::sleep(d)
}

/// Runs `fut` to completion from synchronous code, on this thread: outside any
/// runtime, or on a thread of a caller's runtime (multi-thread or current-thread).
///
/// pglock's futures only wait on channels, on tasks of the I/O runtime and on
/// connections driven by a multi-thread runtime (whose other threads keep running
/// while this one blocks in place), so parking this thread cannot deadlock and
/// there is no "cannot start a runtime from within a runtime" panic.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    BLOCKING.with(|b| b.set(b.get() + 1));
    let _unmark = Unmark;
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let park = move || {
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    };
    // On a worker of a multi-thread runtime, hand the worker's queued tasks to
    // another thread first: one of them may be the driver of the very connection
    // this thread waits on (`Config::drive_on_caller_runtime`).
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(park)
        }
        _ => park(),
    }
}
