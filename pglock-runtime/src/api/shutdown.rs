//! `shutdown`: a process's graceful exit, from the lock manager's side.

use std::time::{Duration, Instant};

use crate::lock::txn::cancel_all_waits;
use crate::pool::registry::{begin_shutdown, close_pools, in_use};
use crate::rt;
use crate::wire::session::{all_closed, close_all};

/// What [`shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shutdown {
    /// Lock waits that were in progress on the server and were cancelled.
    pub cancelled_waits: usize,
    /// Whether every connection came back (bodies finished, guards released)
    /// before the deadline.
    pub finished_in_time: bool,
    /// Sessions still open at the end, closed by force (their locks released by
    /// the server as each session ended).
    pub closed_sessions: usize,
    /// How long it took.
    pub took: Duration,
}

/// How often shutdown looks whether the work in progress has finished.
const POLL: Duration = Duration::from_millis(10);
/// How long it waits for the sockets it closed to be gone.
const SOCKETS: Duration = Duration::from_secs(1);

/// Shuts pglock down in this process, for a graceful exit (on SIGTERM, Ctrl-C):
///
/// 1. new acquisitions and checkouts fail at once with
///    [`ErrorKind::ShuttingDown`](crate::ErrorKind::ShuttingDown);
/// 2. lock waits in progress are cancelled on the server (they fail with
///    `ShuttingDown` too);
/// 3. running bodies and held guards get until `deadline` to finish;
/// 4. then every pool is closed and every session pglock still has open is
///    closed, so the server releases whatever locks they held;
/// 5. it returns once those sockets are closed.
///
/// After it, the server shows no session of this process through pglock and
/// no lock of one. It is for the end of the process: nothing can be locked
/// afterwards. Calling it again does the closing again.
///
/// ```no_run
/// # async fn f() {
/// use std::time::Duration;
///
/// tokio::signal::ctrl_c().await.ok();
/// let done = pglock_runtime::shutdown(Duration::from_secs(10)).await;
/// if !done.finished_in_time {
///     eprintln!("closed {} sessions that were still busy", done.closed_sessions);
/// }
/// # }
/// ```
pub async fn shutdown(deadline: Duration) -> Shutdown {
    // On pglock's runtime: its timers work whatever runtime (or none) calls.
    rt::spawn(shut_down(deadline))
        .await
        .expect("the shutdown task does not panic")
}

/// [`shutdown`] from synchronous code (any thread).
///
/// ```no_run
/// let done = pglock_runtime::shutdown_blocking(std::time::Duration::from_secs(10));
/// # let _ = done;
/// ```
pub fn shutdown_blocking(deadline: Duration) -> Shutdown {
    rt::block_on(shutdown(deadline))
}

async fn shut_down(deadline: Duration) -> Shutdown {
    let started = Instant::now();
    begin_shutdown();
    let cancelled_waits = cancel_all_waits();
    let finished_in_time = loop {
        if in_use() == 0 {
            break true;
        }
        if started.elapsed() >= deadline {
            break false;
        }
        tokio::time::sleep(POLL).await;
    };
    close_pools();
    let closed_sessions = if finished_in_time { 0 } else { in_use() };
    close_all();
    let sockets = Instant::now();
    while !all_closed() && sockets.elapsed() < SOCKETS {
        tokio::time::sleep(POLL).await;
    }
    let done = Shutdown {
        cancelled_waits,
        finished_in_time,
        closed_sessions,
        took: started.elapsed(),
    };
    tracing::info!(target: "pglock", cancelled_waits, finished_in_time, closed_sessions,
        took_ms = done.took.as_millis() as u64, "pglock shut down");
    done
}
