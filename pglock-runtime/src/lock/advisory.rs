//! Advisory lock primitives: take, check, release (awaited or pipelined), and
//! the in-process turn and holder look-ups around a failed acquisition.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::types::Type;

use crate::error::{Error, ErrorKind};
use crate::key::LockKey;
use crate::lock::holders::advisory_holders;
use crate::lock::queue::{self, Releasing, Turn};
use crate::lock::slot::{Claim, Claimed};
use crate::lock::txn::{in_transaction, in_transaction_waiting, CancelOnDrop, Txn, Wait};
use crate::pool::connection::Connection;
use crate::pool::{frames, registry};
use crate::rt;
use crate::sql::{self, ClaimForm};
use crate::wire::exec::{Exec, KeyParams, Param};

/// How long a failed acquisition may spend looking up the holders on a
/// connection of its own, beyond its bound.
const HOLDER_LOOKUP: Duration = Duration::from_millis(250);

/// For an exclusive, waiting acquisition on a fresh connection: waits for this
/// task's turn in the in-process queue of the key (see `lock/queue.rs`), counting that
/// time against a bounded wait. Returns the turn and the wait left for the server.
pub(crate) async fn take_turn(
    alias: &str,
    key: LockKey,
    shared: bool,
    wait: Wait,
) -> Result<(Option<Turn>, Wait), Error> {
    if shared || wait == Wait::Immediate || frames::current(alias).is_some() {
        return Ok((None, wait));
    }
    let limit = match wait {
        Wait::Bounded(d) => Some(d),
        // The session's own `lock_timeout` (the role's, the server's) bounds
        // the wait on the server; it bounds the wait in the process too.
        Wait::Inherit => registry::alias(alias)?.session_lock_timeout(),
        _ => None,
    };
    match queue::wait_turn(alias, key, limit).await {
        Some((turn, left)) => {
            let wait = match (wait, left) {
                (Wait::Bounded(_) | Wait::Inherit, Some(left)) => Wait::Bounded(left),
                (w, _) => w,
            };
            Ok((Some(turn), wait))
        }
        None => {
            let d = limit.unwrap_or_default();
            // Nothing is checked out yet: look through a fresh checkout, briefly
            // (the pool may be full — of this very key's holders —, and the call
            // must not overrun its bound by a checkout wait); none if that fails.
            let look = async {
                let conn = Connection::checkout(alias).await?;
                advisory_holders(conn.exec(), key).await
            };
            let holders = rt::timeout(HOLDER_LOOKUP, look)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            Err(Error::new(
                ErrorKind::LockTimeout,
                "gave up waiting behind other tasks of this process for the same lock",
            )
            .with_key(key)
            .with_waited(d)
            .with_holders(holders)
            .with_alias(alias))
        }
    }
}

/// Adds the holders to a not-acquired error (when the connection can still query
/// and the acquisition did not already find them).
pub(crate) async fn failed(exec: Exec<'_>, key: LockKey, e: Error) -> Error {
    let e = e.with_key(key);
    if !e.is_not_acquired() {
        return e;
    }
    match advisory_holders(exec, key).await {
        Ok(holders) => e.with_holders(holders),
        Err(_) => e,
    }
}

/// `BEGIN`, with `take` (a lock statement) on the wire right behind it: one round
/// trip for both. The outer `Err` is `BEGIN`'s failure; the lock statement then
/// ran outside a transaction block, where a transaction-level lock ends with the
/// statement.
pub(crate) async fn begin_with<F, T>(exec: Exec<'_>, take: F) -> Result<Result<T, Error>, Error>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    // Polled in order: `BEGIN` is sent first.
    let (begun, taken) = futures_util::future::join(exec.batch(sql::BEGIN), take).await;
    begun.map(|()| taken)
}

/// Where a lock statement runs: the transaction it is in, the connection to
/// discard if a dropped wait may have been granted, the slot it also claims.
#[derive(Clone, Copy)]
pub(crate) struct Around<'a> {
    pub(crate) txn: Txn,
    pub(crate) cancel_conn: Option<&'a Connection>,
    pub(crate) claim: Option<&'a Claim<'a>>,
}

impl<'a> Around<'a> {
    /// In `txn`, nothing to discard, no slot.
    pub(crate) fn txn(txn: Txn) -> Around<'a> {
        Around {
            txn,
            cancel_conn: None,
            claim: None,
        }
    }
}

/// Whether [`lock`] puts its whole statement (execution included) on the wire
/// when first polled, so that a statement joined behind it runs after it on the
/// server: in pglock's own transaction, with no `lock_timeout` to set first, and
/// the statement already prepared on the session (or not prepared at all, behind
/// a transaction pooler).
pub(crate) fn sent_at_once(
    exec: Exec<'_>,
    key: LockKey,
    xact: bool,
    wait: Wait,
    around: Around<'_>,
) -> bool {
    if around.txn != Txn::Ours || !matches!(wait, Wait::Immediate | Wait::Inherit) {
        return false;
    }
    let (k, x) = (KeyParams::new(key).kind(), usize::from(xact));
    let (plain, form) = if wait == Wait::Immediate {
        (sql::TRY_LOCK[k][x][0], ClaimForm::Try)
    } else {
        (sql::LOCK[k][x][0], ClaimForm::Wait)
    };
    let sql = around.claim.map_or(plain, |c| c.statement(k, x, form));
    exec.session()
        .is_none_or(|s| !s.prepares() || s.cached(sql).is_some())
}

/// Takes the lock. On a waiting acquisition whose future is dropped, the server-side
/// wait is cancelled and, for a pooled connection (`cancel_conn`), the connection is
/// discarded so that a grant that won the race dies with the session.
///
/// With a `claim` (a scheduled slot, exclusive locks only) the lock statement also
/// claims the slot, in the same statement: `Ok(Some(_))` says whether the slot is
/// this call's to run. Either way the lock is held when this returns `Ok`.
pub(crate) async fn lock(
    exec: Exec<'_>,
    key: LockKey,
    shared: bool,
    xact: bool,
    wait: Wait,
    around: Around<'_>,
) -> Result<Option<Claimed>, Error> {
    let Around {
        txn,
        cancel_conn,
        claim,
    } = around;
    let p = KeyParams::new(key);
    let (k, x, s) = (p.kind(), usize::from(xact), usize::from(shared));
    debug_assert!(claim.is_none() || !shared, "slots take exclusive locks");
    if !xact && exec.behind_pooler() {
        return Err(exec.pooler_refusal());
    }
    // Session-level statements only take the lock on the session the connection
    // was opened on (see `sql::LOCK`).
    let session_pid = exec.session_pid();
    let guard = (!xact).then_some(&session_pid);
    let params = |extra| {
        let lock = p.with_guard(extra, guard);
        match claim {
            Some(c) => c.params(lock),
            None => lock,
        }
    };
    let statement = |plain: &'static str, form: ClaimForm| match claim {
        Some(c) => c.statement(k, x, form),
        None => plain,
    };
    let on_our_session = |rows: Vec<tokio_postgres::Row>| match rows.into_iter().next() {
        Some(row) => Ok(row),
        None => {
            exec.mark_behind_pooler();
            Err(Error::pooler())
        }
    };
    let claimed = |row: tokio_postgres::Row| claim.map(|c| c.read(&row));
    if wait == Wait::Immediate {
        // A release of this key that this process has sent but the server has not
        // answered yet must not make the key look busy.
        queue::settled(key, exec.session()).await;
        let sql = statement(sql::TRY_LOCK[k][x][s], ClaimForm::Try);
        let row = on_our_session(exec.query(sql, &params(&[])).await?)?;
        return if row.get::<_, bool>(0) {
            Ok(claimed(row))
        } else {
            Err(Error::new(ErrorKind::Busy, ""))
        };
    }
    let setting = wait.setting()?;
    let txn = match txn {
        Txn::Unknown if in_transaction(exec).await? => Txn::Caller,
        Txn::Unknown => Txn::None,
        t => t,
    };
    let unlock_if_held = (!xact).then_some((key, shared));
    let waiting = |sql: &'static str, params| {
        let guard = CancelOnDrop::new(exec.client, cancel_conn, unlock_if_held);
        async move {
            let params: Vec<Param<'_>> = params;
            let r = exec.query(sql, &params).await;
            guard.disarm();
            on_our_session(r?)
        }
    };
    let result = match (txn, &setting) {
        (Txn::None, None) => {
            waiting(statement(sql::LOCK[k][x][s], ClaimForm::Wait), params(&[])).await
        }
        // Outside a transaction block the statement is its own transaction, so a
        // transaction-local setting in the same statement ends with it.
        (Txn::None, Some(v)) => {
            let sql = statement(sql::LOCK_WITH_TIMEOUT[k][x][s], ClaimForm::WaitWithTimeout);
            waiting(sql, params(&[(v, Type::TEXT)])).await
        }
        (txn, setting) => {
            in_transaction_waiting(exec, txn, setting.as_deref(), || {
                waiting(statement(sql::LOCK[k][x][s], ClaimForm::Wait), params(&[]))
            })
            .await
        }
    };
    // A wait that `shutdown` cancelled says so.
    let result = result.map_err(|e| match e.kind() {
        ErrorKind::Cancelled if registry::is_shutting_down() => Error::new(
            ErrorKind::ShuttingDown,
            "the lock wait was cancelled by `pglock_runtime::shutdown`",
        )
        .with_source_of(e),
        _ => e,
    });
    match result {
        Err(e)
            if !xact
                && matches!(
                    e.kind(),
                    ErrorKind::LockTimeout
                        | ErrorKind::Cancelled
                        | ErrorKind::Deadlock
                        | ErrorKind::ShuttingDown
                ) =>
        {
            // The grant may have won the race against the timeout or the cancel
            // (DistributedLock #147): release what we were given. (A claim is
            // part of the failed statement: it did not happen.)
            if txn != Txn::Ours && holds(exec, key, shared).await? {
                unlock(exec, key, shared).await?;
            }
            if let Wait::Bounded(d) = wait {
                if e.is_timeout() {
                    return Err(e.with_waited(d));
                }
            }
            Err(e)
        }
        Err(e) => match wait {
            Wait::Bounded(d) if e.is_timeout() => Err(e.with_waited(d)),
            _ => Err(e),
        },
        Ok(row) => Ok(claimed(row)),
    }
}

/// Whether this session holds `key` in the given mode. Reads `pg_locks`, whose
/// cost grows with every lock on the server: for error paths only (after a lock
/// timeout or a cancel, whose grant may have won the race).
pub(crate) async fn holds(exec: Exec<'_>, key: LockKey, shared: bool) -> Result<bool, Error> {
    let (c, o, s) = key.pg_locks_ids();
    let mode = if shared { "ShareLock" } else { "ExclusiveLock" };
    Ok(exec
        .one(
            sql::HOLDS_ADVISORY,
            &[
                (&c, Type::OID),
                (&o, Type::OID),
                (&s, Type::INT2),
                (&mode, Type::TEXT),
            ],
        )
        .await?
        .get(0))
}

/// Releases a session lock; `Err(LostBeforeRelease)` when the server says it was
/// not held. The unlock checks itself: `pg_advisory_unlock` returns `false` (and
/// the server logs a WARNING) for a lock the session does not hold, so no second
/// statement, and no `pg_locks` read, is needed to know.
pub(crate) async fn unlock(exec: Exec<'_>, key: LockKey, shared: bool) -> Result<(), Error> {
    let p = KeyParams::new(key);
    let row = exec
        .one(sql::UNLOCK[p.kind()][usize::from(shared)], &p.with(&[]))
        .await?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        tracing::error!(target: "pglock", key = %key, "advisory lock was not held when it was released: it was lost");
        Err(Error::new(
            ErrorKind::LostBeforeRelease,
            "pg_advisory_unlock returned false: the session no longer held the lock, so the \
             work it protected may have overlapped with another holder",
        )
        .with_key(key))
    }
}

/// Sends the unlock of a session lock on a pooled connection now and hands the
/// check of its reply ([`unlock`]) to the connection's driver: the connection can
/// go back to the pool at once, and whoever uses it next is queued behind the
/// unlock on the wire. `releasing` is dropped when the reply is in. `false`
/// (nothing sent) when the unlock statement is not prepared on this connection
/// yet: the request would then not be on the wire before the connection serves
/// someone else.
///
/// A failed check (`false`, or an error) means the session may still hold the
/// lock (a cancelled unlock) or lost it earlier, and nobody is left to return the
/// error to: it is an error event, and the session is closed, which releases
/// whatever it holds.
pub(crate) fn unlock_pipelined(
    conn: &Connection,
    key: LockKey,
    shared: bool,
    releasing: Releasing,
) -> bool {
    let session = conn.shared_session().clone();
    if session
        .cached(sql::UNLOCK[KeyParams::new(key).kind()][usize::from(shared)])
        .is_none()
    {
        return false;
    }
    let checks = session.checks.clone();
    let mut check = Box::pin(async move {
        let r = unlock(Exec::on(&session), key, shared).await;
        drop(releasing);
        if let Err(e) = r {
            tracing::error!(target: "pglock", key = %key, pid = session.pid, error = %e,
                "pipelined release failed; closing the session to release whatever it holds");
            session.close();
        }
    });
    // The first poll puts the request on the wire (the statement is prepared, so
    // nothing is awaited before tokio-postgres sends it); the driver polls it from
    // then on.
    let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    if check.as_mut().poll(&mut cx).is_pending() {
        checks.push(check);
    }
    true
}
