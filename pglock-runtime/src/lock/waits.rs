//! What a `lock_timeout` scope's body waited for, and who blocked it.
//!
//! PostgreSQL's error for a statement that hits `lock_timeout` (SQLSTATE 55P03,
//! "canceling statement due to lock timeout") names no relation, and by the time
//! it reaches the client the wait is over: `pg_locks` and `pg_blocking_pids` no
//! longer show it, and in a transaction block the scope's session can run nothing
//! but a rollback. So the wait is looked at while it lasts: while the body of a
//! scope with a limit runs, every third of the limit a session of the alias's
//! pool that is free at that moment reads the scope session's ungranted lock
//! request and the sessions blocking it (`sql::LOCK_WAIT`), and records what it
//! saw on the scope's session. A wait that times out lasts the whole limit, so at
//! least two looks fall inside it. A body that finishes within a third of its
//! limit costs a timer and nothing else; with no free session (a pool of one),
//! nothing is seen. A look at a session that is not waiting for a lock reads one
//! backend's activity row and not `pg_locks` (whose cost grows with every lock on
//! the server; see `sql::LOCK_WAIT`).
//!
//! The driver's error becomes a pglock [`Error`] through `From` (the `?` of a body
//! returning `Result<_, pglock_runtime::Error>`): for a lock timeout inside a
//! scope, that conversion takes the wait last seen on the scope connection, if it
//! is recent enough to be the one that just ended, and names its relation, mode
//! and blockers.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::error::Error;
use crate::pool::connection::Connection;
use crate::pool::frames;
use crate::rows::LockWait;
use crate::rt;
use crate::sql;
use crate::wire::session::{SeenWait, Session};

/// The shortest interval between two looks.
const MIN_EVERY: Duration = Duration::from_millis(20);
/// How long one look (a checkout and a query) may take before it is given up.
const LOOK_LIMIT: Duration = Duration::from_secs(1);

/// The scope session whose lock waits a scope's body has looked at.
pub(crate) struct Watch {
    alias: Arc<str>,
    session: Arc<Session>,
    every: Duration,
    /// How old a look may be and still describe the wait an error reports.
    valid_for: Duration,
}

impl Watch {
    /// For a body run on `conn` with `lock_timeout` `limit`. `None` behind a
    /// transaction pooler (the server session changes between statements).
    pub(crate) fn new(conn: &Connection, limit: Duration) -> Option<Watch> {
        let session = conn.shared_session();
        if session.behind_pooler() {
            return None;
        }
        let every = (limit / 3).max(MIN_EVERY);
        Some(Watch {
            alias: conn.alias_name(),
            session: session.clone(),
            every,
            valid_for: limit + every,
        })
    }

    /// Looks every interval, for as long as it is polled.
    async fn look_while_polled(&self) {
        loop {
            rt::sleep(self.every).await;
            let at = Instant::now();
            if let Ok(Ok(wait)) = rt::timeout(LOOK_LIMIT, look(&self.alias, self.session.pid)).await
            {
                self.session.record_wait(wait.map(|wait| SeenWait {
                    wait,
                    at,
                    valid_for: self.valid_for,
                }));
            }
            // A look that failed (pool busy, server slow) says nothing: the next
            // one may.
        }
    }

    /// Looks in a task of pglock's runtime until the returned value is dropped
    /// (for a body that runs on the caller's thread).
    pub(crate) fn spawn(self) -> Looking {
        let watch = Arc::new(self);
        let w = watch.clone();
        let task = rt::spawn(async move { w.look_while_polled().await });
        Looking { watch, task }
    }
}

/// Runs `body`, looking at its lock waits alongside when `watch` is given.
pub(crate) async fn watching<F: Future>(watch: Option<&Watch>, body: F) -> F::Output {
    let Some(watch) = watch else {
        return body.await;
    };
    let out = {
        let looks = Box::pin(watch.look_while_polled());
        let body = std::pin::pin!(body);
        match futures_util::future::select(body, looks).await {
            futures_util::future::Either::Left((out, _)) => out,
            futures_util::future::Either::Right(((), body)) => body.await,
        }
    };
    watch.session.record_wait(None);
    out
}

/// Looks taken by a task; they stop when this is dropped.
pub(crate) struct Looking {
    watch: Arc<Watch>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Looking {
    fn drop(&mut self) {
        self.task.abort();
        self.watch.session.record_wait(None);
    }
}

/// One look at what the session `pid` of `alias` waits for, from a session of
/// the alias's pool that is free now (a look never queues for one, ahead of the
/// application's own checkouts).
async fn look(alias: &str, pid: i32) -> Result<Option<LockWait>, Error> {
    let conn = Connection::checkout_free(alias).await?;
    let rows = conn
        .exec()
        .query(sql::LOCK_WAIT, &[(&pid, Type::INT4)])
        .await?;
    Ok(LockWait::from_rows(&rows))
}

impl From<tokio_postgres::Error> for Error {
    /// Classifies a driver error ([`ErrorKind::LockTimeout`](crate::ErrorKind::LockTimeout)
    /// for SQLSTATE 55P03, [`ErrorKind::ConnectionLost`](crate::ErrorKind::ConnectionLost)
    /// for a closed connection, …), so that a body returning
    /// `Result<_, pglock_runtime::Error>` can use `?` on its queries.
    ///
    /// A lock timeout converted inside a `lock_timeout` scope (`#[lock_timeout]`,
    /// [`lock_timeout()`](crate::lock_timeout()), a `#[prioritize]` timeout) names
    /// what the statement waited for and who blocked it
    /// ([`Error::relation`], [`Error::holders`]) when pglock saw the wait: see
    /// [`LockTimeout`](crate::LockTimeout).
    fn from(e: tokio_postgres::Error) -> Error {
        let timed_out = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
        let err = Error::from_pg(e);
        if !timed_out {
            return err;
        }
        let seen = frames::find_map(|conn| {
            let wait = conn.session().take_recent_wait()?;
            Some((wait, conn.alias_name()))
        });
        match seen {
            Some((wait, alias)) => err.with_alias(&alias).with_lock_wait(wait),
            None => err,
        }
    }
}
