//! What lock acquisitions share, advisory and table locks alike: how long to
//! wait, the transaction situation of the connection, running a lock statement
//! inside a transaction block, and cancelling a wait whose future is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::error::Error;
use crate::key::LockKey;
use crate::lock::timeout::check_duration;
use crate::pool::connection::Connection;
use crate::sql;
use crate::wire::exec::Exec;
use crate::wire::send_now::send_now;
use crate::wire::session::Canceller;

/// How long an acquisition may wait for the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Whatever `lock_timeout` the session has (a surrounding `lock_timeout` scope,
    /// or the server's default).
    Inherit,
    /// Without limit, whatever the session's `lock_timeout`.
    Forever,
    /// Not at all (`pg_try_advisory_*`).
    Immediate,
    /// At most this long, measured by the server (`lock_timeout` for the lock
    /// statement alone).
    Bounded(Duration),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Inherit => f.write_str("the session's lock_timeout"),
            Wait::Forever => f.write_str("forever"),
            Wait::Immediate => f.write_str("no wait"),
            Wait::Bounded(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl Wait {
    pub(crate) fn from_timeout(t: Option<Duration>) -> Wait {
        match t {
            None => Wait::Forever,
            Some(d) if d.is_zero() => Wait::Immediate,
            Some(d) => Wait::Bounded(d),
        }
    }

    /// Reports the limit the caller set on a lock timeout (the server may have been
    /// given less, after time spent queued in the process).
    pub(crate) fn report(self, e: Error) -> Error {
        match self {
            Wait::Bounded(d) if e.is_timeout() => e.with_waited(d),
            _ => e,
        }
    }

    /// The `lock_timeout` value to set for the statement, if any.
    pub(crate) fn setting(self) -> Result<Option<String>, Error> {
        match self {
            Wait::Inherit | Wait::Immediate => Ok(None),
            Wait::Forever => Ok(Some(sql::lock_timeout_value(None))),
            Wait::Bounded(d) => check_duration(d).map(|_| Some(sql::lock_timeout_value(Some(d)))),
        }
    }
}

/// The transaction situation of the connection a lock is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Txn {
    /// No transaction block (each statement is its own transaction).
    None,
    /// A transaction pglock began for this lock: a failure rolls it back whole.
    Ours,
    /// The caller's transaction: a failure must leave it usable (savepoint).
    Caller,
    /// Not known: ask the server.
    Unknown,
}

/// Whether a transaction block is open on the session. Uses the simple-query
/// protocol, where the check is exact (see [`sql::IN_TRANSACTION`]).
pub(crate) async fn in_transaction(exec: Exec<'_>) -> Result<bool, Error> {
    in_transaction_as(exec, sql::IN_TRANSACTION).await
}

/// [`in_transaction`] as the heartbeat asks it of a transaction-level lock on a
/// connection handed to user code ([`sql::HEARTBEAT_IN_TRANSACTION`]): its
/// statement is tagged, so that `pg_stat_activity` shows the heartbeat, not a
/// query of the application, as the last statement of an idle holder.
pub(crate) async fn heartbeat_in_transaction(exec: Exec<'_>) -> Result<bool, Error> {
    in_transaction_as(exec, sql::HEARTBEAT_IN_TRANSACTION).await
}

async fn in_transaction_as(exec: Exec<'_>, statement: &'static str) -> Result<bool, Error> {
    let rows = exec
        .client
        .simple_query(statement)
        .await
        .map_err(Error::from_pg)?;
    Ok(rows
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))))
}

/// Runs a lock statement inside a transaction block with `lock_timeout` set to
/// `setting` for that statement alone. In the caller's transaction (`Txn::Caller`)
/// the attempt runs in a savepoint, so a failure leaves the transaction usable and
/// rolls back anything the attempt did; in pglock's own transaction (`Txn::Ours`) a
/// failure is followed by a rollback of the whole transaction by the caller.
pub(crate) async fn in_transaction_waiting<F, Fut, T>(
    exec: Exec<'_>,
    txn: Txn,
    setting: Option<&str>,
    statement: F,
) -> Result<T, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let savepoint = txn != Txn::Ours;
    if savepoint {
        exec.batch(sql::SAVEPOINT).await?;
    }
    let attempt = async {
        let prev: Option<String> = match setting {
            Some(v) => Some(
                exec.one(sql::SET_LOCAL_LOCK_TIMEOUT, &[(&v, Type::TEXT)])
                    .await?
                    .get(0),
            ),
            None => None,
        };
        let taken = statement().await?;
        if let Some(prev) = prev {
            exec.one(
                sql::RESTORE_LOCK_TIMEOUT,
                &[(&prev, Type::TEXT), (&true, Type::BOOL)],
            )
            .await?;
        }
        Ok::<T, Error>(taken)
    }
    .await;
    match (attempt, savepoint) {
        (Ok(taken), true) => exec.batch(sql::RELEASE_SAVEPOINT).await.map(|()| taken),
        (Ok(taken), false) => Ok(taken),
        (Err(e), true) => {
            exec.batch(sql::ROLLBACK_TO_SAVEPOINT).await?;
            Err(e)
        }
        (Err(e), false) => Err(e),
    }
}

/// Cancels a server-side lock wait if the acquiring future is dropped while the
/// server is still waiting.
pub(crate) struct CancelOnDrop<'a> {
    armed: bool,
    client: &'a Client,
    conn: Option<&'a Connection>,
    unlock_if_held: Option<(LockKey, bool)>,
    /// Its entry among the waits in progress ([`cancel_all_waits`]).
    id: u64,
}

/// The server-side waits in progress in this process, by id: what cancels
/// each.
static WAITS: Mutex<Option<HashMap<u64, Canceller>>> = Mutex::new(None);
static WAIT_IDS: AtomicU64 = AtomicU64::new(0);

fn waits() -> std::sync::MutexGuard<'static, Option<HashMap<u64, Canceller>>> {
    WAITS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Cancels every lock wait in progress on the server (for shutdown): each
/// fails with `Cancelled` and its guard cleans up as usual. Returns how many.
pub(crate) fn cancel_all_waits() -> usize {
    let all: Vec<Canceller> = waits()
        .as_ref()
        .map(|w| w.values().cloned().collect())
        .unwrap_or_default();
    let n = all.len();
    for c in all {
        c.cancel();
    }
    n
}

impl<'a> CancelOnDrop<'a> {
    /// `conn`: a pooled connection nobody else uses, closed on cancel.
    /// `unlock_if_held`: a session lock to release on a caller's client if the
    /// grant wins the race.
    pub(crate) fn new(
        client: &'a Client,
        conn: Option<&'a Connection>,
        unlock_if_held: Option<(LockKey, bool)>,
    ) -> Self {
        let id = WAIT_IDS.fetch_add(1, Ordering::Relaxed);
        let canceller = match conn {
            Some(c) => c.session().canceller(),
            None => Canceller::of_client(client),
        };
        waits()
            .get_or_insert_with(Default::default)
            .insert(id, canceller);
        CancelOnDrop {
            armed: true,
            client,
            conn,
            unlock_if_held,
            id,
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        let canceller = waits().as_mut().and_then(|w| w.remove(&self.id));
        if !self.armed {
            return;
        }
        tracing::debug!(target: "pglock", "lock wait abandoned: cancelling it on the server");
        match (self.conn, self.unlock_if_held) {
            // The session may be granted the lock in the instant before the cancel
            // lands; closing the session is the one way to be sure nothing survives.
            (Some(conn), _) => {
                conn.discard();
                if let Some(c) = canceller {
                    c.cancel();
                }
                return;
            }
            // A caller's client stays open: queue an unlock-if-held behind the wait,
            // which runs once the wait ends either way.
            (None, Some((key, shared))) => {
                send_now(
                    self.client
                        .batch_execute(&sql::unlock_if_held_literal(key, shared)),
                );
            }
            // Transaction-level and table locks end with the caller's transaction,
            // which the cancelled wait has aborted.
            (None, None) => {}
        }
        // A caller's own client: its TLS settings are not pglock's to know.
        if let Some(c) = canceller {
            c.cancel();
        }
    }
}
