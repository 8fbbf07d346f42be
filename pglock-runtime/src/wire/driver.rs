//! The task that drives a pooled connection's socket, and the checks of replies
//! nobody awaits that it polls alongside: pipelined releases, and the server-side
//! return check of connections that user code had.
//!
//! A pipelined release sends its unlock and hands the check of the reply to the
//! connection's driver instead of spawning a task for it: the reply wakes the
//! driver anyway, so checking it there costs no task, no wake-up and no thread
//! hop, which on a busy loop is most of what a release costs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::{waker, ArcWake, AtomicWaker};

type Check = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Checks handed to one connection's driver.
#[derive(Default)]
pub(crate) struct Checks {
    pending: Mutex<FuturesUnordered<Check>>,
    wake: Arc<DriverWake>,
    /// The driver is gone (connection closed, or its runtime shut down).
    closed: AtomicBool,
    /// Wakes [`Checks::closed`] waiters when the driver goes.
    on_close: tokio::sync::Notify,
}

/// The waker the checks are polled with. A check becomes ready when the driver
/// itself routes its reply, from inside the driver's poll: waking the driver
/// task then would reschedule it behind other work and, on a multi-thread
/// runtime, wake a parked worker to steal it (a thread hop per release). So a
/// wake from inside the poll only marks the checks for another round of the same
/// poll; a wake from outside (a push) wakes the task.
#[derive(Default)]
struct DriverWake {
    task: AtomicWaker,
    inside: AtomicBool,
    again: AtomicBool,
}

impl ArcWake for DriverWake {
    fn wake_by_ref(this: &Arc<Self>) {
        this.again.store(true, Ordering::SeqCst);
        if !this.inside.load(Ordering::SeqCst) {
            this.task.wake();
        }
    }
}

impl Checks {
    /// Hands `check` to the driver, which polls it until it completes (or the
    /// connection closes, which drops it).
    pub(crate) fn push(&self, check: Check) {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            // Nobody would ever poll it. The session is gone, and with it
            // whatever it held; dropping the check ends what it guards.
            drop(pending);
            drop(check);
            return;
        }
        pending.push(check);
        drop(pending);
        ArcWake::wake_by_ref(&self.wake);
    }

    /// Whether the driver is gone, and with it the socket.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Resolves once the driver is gone: the socket is closed, and the server
    /// has ended (or will end) the session with whatever it held.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.on_close.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Drops every pending check (they hold the connection: left in place, they
    /// would keep it, and themselves, alive for ever).
    fn close(&self) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::SeqCst);
        let left = std::mem::take(&mut *pending);
        drop(pending);
        self.on_close.notify_waiters();
        left.len()
    }
}

/// Drives `connection` and polls the checks handed to it.
pub(crate) async fn drive<C>(mut connection: C, checks: Arc<Checks>, alias: String)
where
    C: Future<Output = Result<(), tokio_postgres::Error>> + Unpin,
{
    /// Closes the checks however the driver ends: the connection closing, or
    /// the task being dropped with its runtime.
    struct Closing {
        checks: Arc<Checks>,
        alias: String,
        /// The connection closed (rather than the task being dropped).
        closed: bool,
    }
    impl Drop for Closing {
        fn drop(&mut self) {
            let left = self.checks.close();
            if left == 0 {
                return;
            }
            if self.closed {
                // The session ended under releases whose replies never came.
                tracing::warn!(target: "pglock", alias = %self.alias, releases = left,
                    "connection closed with releases on the wire: the server released their \
                     locks with the session");
            } else {
                // The runtime shut down (a program returning from `main` after its
                // last call): the socket closes with it, and the server releases
                // what the session held. Not an incident.
                tracing::debug!(target: "pglock", alias = %self.alias, releases = left,
                    "runtime shut down with releases on the wire: the server releases their \
                     locks with the session");
            }
        }
    }
    let mut closing = Closing {
        checks: checks.clone(),
        alias: alias.clone(),
        closed: false,
    };
    let wake = checks.wake.clone();
    let check_waker = waker(wake.clone());
    let closed = std::future::poll_fn(|cx| {
        wake.task.register(cx.waker());
        wake.inside.store(true, Ordering::SeqCst);
        let r = loop {
            wake.again.store(false, Ordering::SeqCst);
            // The socket first: replies it reads are then ready for the checks.
            let r = Pin::new(&mut connection).poll(cx);
            {
                let mut pending = checks.pending.lock().unwrap_or_else(|e| e.into_inner());
                let mut ccx = Context::from_waker(&check_waker);
                while let Poll::Ready(Some(())) = pending.poll_next_unpin(&mut ccx) {}
            }
            if r.is_ready() || !wake.again.load(Ordering::SeqCst) {
                break r;
            }
        };
        wake.inside.store(false, Ordering::SeqCst);
        // A wake that came from another thread while `inside` was set.
        if r.is_pending() && wake.again.load(Ordering::SeqCst) {
            cx.waker().wake_by_ref();
        }
        r
    })
    .await;
    closing.closed = true;
    drop(closing);
    if let Err(e) = closed {
        tracing::debug!(target: "pglock", alias = %alias, error = %e, "connection closed");
    }
}
