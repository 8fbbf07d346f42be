//! Advisory locks: acquisition, guards and release.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Transaction};

use crate::activity::advisory_holders;
use crate::connection::{scope_or_checkout, Connection};
use crate::error::{Error, ErrorKind};
use crate::exec::{send_now, Exec, KeyParams};
use crate::key::{KeyHash, LockKey, ToLockKey};
use crate::registry::DEFAULT_ALIAS;
use crate::{rt, sql};

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
    fn setting(self) -> Result<Option<String>, Error> {
        match self {
            Wait::Inherit | Wait::Immediate => Ok(None),
            Wait::Forever => Ok(Some(sql::lock_timeout_value(None))),
            Wait::Bounded(d) => {
                crate::timeout::check_duration(d).map(|_| Some(sql::lock_timeout_value(Some(d))))
            }
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

/// An advisory lock to acquire: key, mode, lifetime, wait and database alias.
///
/// Build one with [`advisory`] (or [`AdvisoryLock::new`]), then call one of the
/// `acquire*` methods. The builder is cheap to clone and can be reused.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// let lock = pglock_runtime::advisory("nightly-report").timeout(Duration::from_secs(2));
/// let guard = lock.acquire().await?; // waits at most 2 s, measured by the server
/// // ... run the report on guard.connection() or pglock_runtime::connection() ...
/// guard.release().await?; // reports a lock lost while held
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "an AdvisoryLock does nothing until one of its acquire methods is called"]
pub struct AdvisoryLock {
    pub(crate) key: LockKey,
    pub(crate) shared: bool,
    pub(crate) xact: bool,
    pub(crate) wait: Wait,
    pub(crate) alias: Cow<'static, str>,
    pub(crate) cancel_on_lost: bool,
}

impl fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvisoryLock")
            .field("key", &self.key)
            .field("shared", &self.shared)
            .field("xact", &self.xact)
            .field("wait", &self.wait)
            .field("alias", &self.alias)
            .finish()
    }
}

/// An exclusive, session-level advisory lock on `key` that waits without limit
/// (unless a `lock_timeout` scope says otherwise), on the `"default"` alias.
/// Strings are hashed with [`KeyHash::DjangoPglock`]; see [`advisory_with`] for the
/// other algorithms.
///
/// ```
/// use pglock_runtime::{advisory, LockKey};
///
/// assert_eq!(advisory(42).key(), LockKey::Int(42));
/// assert_eq!(advisory((1, 2)).key(), LockKey::Pair(1, 2));
/// assert_eq!(advisory("hello").key(), LockKey::Int(1054880662928880172));
/// ```
pub fn advisory(key: impl ToLockKey) -> AdvisoryLock {
    AdvisoryLock::new(key.to_lock_key(KeyHash::default()))
}

/// Like [`advisory`], hashing a string key with `hash`.
///
/// ```
/// use pglock_runtime::{advisory_with, KeyHash, LockKey};
///
/// let lock = advisory_with("hello", KeyHash::Sqlx);
/// assert_eq!(lock.key(), LockKey::Int(5976985304735029827));
/// ```
pub fn advisory_with(key: impl ToLockKey, hash: KeyHash) -> AdvisoryLock {
    AdvisoryLock::new(key.to_lock_key(hash))
}

impl AdvisoryLock {
    /// An exclusive session lock on `key`; see [`advisory`].
    pub fn new(key: LockKey) -> AdvisoryLock {
        AdvisoryLock {
            key,
            shared: false,
            xact: false,
            wait: Wait::Inherit,
            alias: Cow::Borrowed(DEFAULT_ALIAS),
            cancel_on_lost: false,
        }
    }

    /// The key this lock takes.
    pub fn key(&self) -> LockKey {
        self.key
    }

    /// Shared mode: shared holders coexist; an exclusive holder excludes them all.
    pub fn shared(mut self) -> AdvisoryLock {
        self.shared = true;
        self
    }

    /// Transaction level: the lock ends with the transaction it was taken in, and
    /// cannot be released by hand. Works behind transaction-pooling PgBouncer.
    pub fn xact(mut self) -> AdvisoryLock {
        self.xact = true;
        self
    }

    /// Waits at most `d` for the lock, measured by the server. `Duration::ZERO`
    /// means "do not wait" (`pg_try_advisory_*`).
    pub fn timeout(mut self, d: Duration) -> AdvisoryLock {
        self.wait = Wait::from_timeout(Some(d));
        self
    }

    /// Does not wait: fails with [`ErrorKind::Busy`] at once if the lock is held.
    pub fn no_wait(mut self) -> AdvisoryLock {
        self.wait = Wait::Immediate;
        self
    }

    /// Waits without limit, even inside a `lock_timeout` scope.
    pub fn wait_forever(mut self) -> AdvisoryLock {
        self.wait = Wait::Forever;
        self
    }

    /// For [`run`](AdvisoryLock::run): if the heartbeat finds the lock lost while
    /// the future runs (its session died, or it was unlocked), drop the future and
    /// fail with [`ErrorKind::LockLost`]. By default the future keeps running, the
    /// loss is logged at once and reported when it ends.
    pub fn cancel_on_lost(mut self) -> AdvisoryLock {
        self.cancel_on_lost = true;
        self
    }

    /// Uses a registered database alias instead of `"default"`.
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> AdvisoryLock {
        self.alias = alias.into();
        self
    }

    pub(crate) fn spec(&self) -> crate::scope::Spec {
        crate::scope::Spec {
            alias: self.alias.clone(),
            lock: Some(crate::scope::LockSpec {
                key: self.key,
                shared: self.shared,
                xact: self.xact,
                wait: self.wait,
            }),
            lock_timeout: None,
            prioritize: None,
            cancel_on_lost: self.cancel_on_lost,
            holders: true,
        }
    }

    /// Runs `fut` while holding the lock, with the lock's connection as the scope
    /// connection ([`connection()`](crate::connection())). A transaction-level lock
    /// runs `fut` in a transaction committed when it completes and rolled back if it
    /// panics. The lock is released before this returns, on every path; if the
    /// returned future is dropped mid-way, the session is closed, which releases it.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pglock_runtime::Error> {
    /// let rows = pglock_runtime::advisory(("invoice", 42))
    ///     .run(async {
    ///         let db = pglock_runtime::connection().await?;
    ///         Ok::<_, pglock_runtime::Error>(
    ///             db.execute("UPDATE invoices SET sent = true WHERE id = 42", &[]).await?,
    ///         )
    ///     })
    ///     .await??;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](AdvisoryLock::acquire), plus release errors
    /// ([`ErrorKind::LostBeforeRelease`]). The future's own output is inside `Ok`.
    pub async fn run<F: std::future::Future>(&self, fut: F) -> Result<F::Output, Error> {
        Box::pin(crate::scope::run(self.spec(), fut, |_| false))
            .await
            .into_result()
    }

    /// Acquires the lock on the scope connection of the alias (inside an annotated
    /// call or another lock's scope), or on a connection checked out for the guard.
    ///
    /// A transaction-level lock outside any scope opens a transaction that the
    /// guard commits ([`AdvisoryGuard::commit`]) or rolls back (on drop). Inside a
    /// scope it needs the scope connection to be in a transaction already.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Busy`] (no-wait) or [`ErrorKind::LockTimeout`] when someone else
    /// holds it, both with [`Error::holders`]; [`ErrorKind::Deadlock`],
    /// [`ErrorKind::Cancelled`], [`ErrorKind::ConnectionLost`]; registry and pool
    /// errors.
    pub async fn acquire(&self) -> Result<AdvisoryGuard<'static>, Error> {
        let (turn, wait) = take_turn(&self.alias, self.key, self.shared, self.wait).await?;
        let (conn, fresh) = scope_or_checkout(&self.alias).await?;
        let exec = Exec::pooled(&conn);
        let txn = if self.xact {
            if fresh {
                // `BEGIN` is sent below, together with the lock statement.
                Txn::Ours
            } else if in_transaction(exec).await? {
                Txn::Caller
            } else {
                return Err(Error::usage(
                    "a transaction-level (`xact`) lock needs an open transaction, and the scope \
                     connection has none: take it outside any scope (pglock opens a transaction), \
                     inside an `xact` scope, or with `acquire_in(&transaction)`",
                )
                .with_key(self.key)
                .with_alias(&self.alias));
            }
        } else if fresh {
            Txn::None
        } else {
            Txn::Unknown
        };
        let cancel = Some(&conn);
        let take = lock(exec, self.key, self.shared, self.xact, wait, txn, cancel);
        let taken = if txn == Txn::Ours {
            begin_with(exec, take).await?
        } else {
            take.await
        };
        match taken.map_err(|e| self.wait.report(e)) {
            Ok(()) => {
                let mut guard = AdvisoryGuard::new(Target::Owned(conn), self, txn == Txn::Ours);
                guard.turn = turn;
                Ok(guard)
            }

            Err(e) => {
                if txn == Txn::Ours {
                    exec.batch(sql::ROLLBACK).await.ok();
                }
                Err(failed(exec, self.key, e).await.with_alias(&self.alias))
            }
        }
    }

    /// Like [`acquire`](AdvisoryLock::acquire), but `Ok(None)` when the lock is held
    /// elsewhere ([`ErrorKind::Busy`] or [`ErrorKind::LockTimeout`]).
    ///
    /// # Errors
    ///
    /// Every other failure of [`acquire`](AdvisoryLock::acquire).
    pub async fn try_acquire(&self) -> Result<Option<AdvisoryGuard<'static>>, Error> {
        match self.acquire().await {
            Ok(g) => Ok(Some(g)),
            Err(e) if e.is_not_acquired() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Acquires a session-level lock on the caller's own client (postgres-lock's
    /// use). The guard borrows the client; release it with
    /// [`AdvisoryGuard::release`].
    ///
    /// # Errors
    ///
    /// As [`acquire`](AdvisoryLock::acquire); [`ErrorKind::Usage`] for an `xact`
    /// lock (use [`acquire_in`](AdvisoryLock::acquire_in) with a transaction).
    pub async fn acquire_on<'c>(&self, client: &'c Client) -> Result<AdvisoryGuard<'c>, Error> {
        if self.xact {
            return Err(Error::usage(
                "a transaction-level (`xact`) lock on a bare client would end with the statement \
                 that takes it: use `acquire_in(&transaction)`",
            )
            .with_key(self.key));
        }
        self.acquire_borrowed(client, Txn::Unknown).await
    }

    /// Acquires the lock inside the caller's transaction. A transaction-level lock
    /// lasts until that transaction ends; a session-level one until released. A
    /// failure (timeout, busy) leaves the transaction usable: the attempt runs in a
    /// savepoint.
    ///
    /// # Errors
    ///
    /// As [`acquire`](AdvisoryLock::acquire).
    pub async fn acquire_in<'c>(
        &self,
        txn: &'c Transaction<'_>,
    ) -> Result<AdvisoryGuard<'c>, Error> {
        let client = tokio_postgres::GenericClient::client(txn);
        self.acquire_borrowed(client, Txn::Caller).await
    }

    async fn acquire_borrowed<'c>(
        &self,
        client: &'c Client,
        txn: Txn,
    ) -> Result<AdvisoryGuard<'c>, Error> {
        let exec = Exec::borrowed(client);
        match lock(exec, self.key, self.shared, self.xact, self.wait, txn, None).await {
            Ok(()) => Ok(AdvisoryGuard::new(Target::Borrowed(client), self, false)),
            Err(e) => Err(failed(exec, self.key, e).await),
        }
    }
}

/// For an exclusive, waiting acquisition on a fresh connection: waits for this
/// task's turn in the in-process queue of the key (see `queue.rs`), counting that
/// time against a bounded wait. Returns the turn and the wait left for the server.
pub(crate) async fn take_turn(
    alias: &str,
    key: LockKey,
    shared: bool,
    wait: Wait,
) -> Result<(Option<crate::queue::Turn>, Wait), Error> {
    if shared || wait == Wait::Immediate || crate::connection::current(alias).is_some() {
        return Ok((None, wait));
    }
    let limit = match wait {
        Wait::Bounded(d) => Some(d),
        _ => None,
    };
    match crate::queue::wait_turn(alias, key, limit).await {
        Some((turn, left)) => {
            let wait = match (wait, left) {
                (Wait::Bounded(_), Some(left)) => Wait::Bounded(left),
                (w, _) => w,
            };
            Ok((Some(turn), wait))
        }
        None => {
            let d = limit.unwrap_or_default();
            let holders = crate::activity::inspect_holders(alias, key).await;
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

/// Whether a transaction block is open on the session. Uses the simple-query
/// protocol, where the check is exact (see [`sql::IN_TRANSACTION`]).
pub(crate) async fn in_transaction(exec: Exec<'_>) -> Result<bool, Error> {
    let rows = exec
        .client
        .simple_query(sql::IN_TRANSACTION)
        .await
        .map_err(Error::from_pg)?;
    Ok(rows
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))))
}

/// `BEGIN`, with `take` (a lock statement) on the wire right behind it: one round
/// trip for both. The outer `Err` is `BEGIN`'s failure; the lock statement then
/// ran outside a transaction block, where a transaction-level lock ends with the
/// statement.
pub(crate) async fn begin_with<F>(exec: Exec<'_>, take: F) -> Result<Result<(), Error>, Error>
where
    F: std::future::Future<Output = Result<(), Error>>,
{
    // Polled in order: `BEGIN` is sent first.
    let (begun, taken) = futures_util::future::join(exec.batch(sql::BEGIN), take).await;
    begun.map(|()| taken)
}

/// Takes the lock. On a waiting acquisition whose future is dropped, the server-side
/// wait is cancelled and, for a pooled connection (`cancel_conn`), the connection is
/// discarded so that a grant that won the race dies with the session.
pub(crate) async fn lock(
    exec: Exec<'_>,
    key: LockKey,
    shared: bool,
    xact: bool,
    wait: Wait,
    txn: Txn,
    cancel_conn: Option<&Connection>,
) -> Result<(), Error> {
    let p = KeyParams::new(key);
    let (k, x, s) = (p.kind(), usize::from(xact), usize::from(shared));
    if !xact && exec.is_pooled() {
        return Err(Error::pooler());
    }
    // Session-level statements only take the lock on the session the connection
    // was opened on (see `sql::LOCK`).
    let session_pid = exec.session_pid();
    let guard = (!xact).then_some(&session_pid);
    let params = |extra| p.with_guard(extra, guard);
    let on_our_session = |rows: Vec<tokio_postgres::Row>| match rows.into_iter().next() {
        Some(row) => Ok(row),
        None => {
            exec.mark_pooled();
            Err(Error::pooler())
        }
    };
    if wait == Wait::Immediate {
        // A release of this key that this process has sent but the server has not
        // answered yet must not make the key look busy.
        crate::queue::settled(key, exec.pg()).await;
        let row = on_our_session(exec.query(sql::TRY_LOCK[k][x][s], &params(&[])).await?)?;
        return if row.get::<_, bool>(0) {
            Ok(())
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
            let params: Vec<crate::exec::Param<'_>> = params;
            let r = exec.query(sql, &params).await;
            guard.disarm();
            on_our_session(r?).map(drop)
        }
    };
    let result = match (txn, &setting) {
        (Txn::None, None) => waiting(sql::LOCK[k][x][s], params(&[])).await,
        // Outside a transaction block the statement is its own transaction, so a
        // transaction-local setting in the same statement ends with it.
        (Txn::None, Some(v)) => {
            waiting(sql::LOCK_WITH_TIMEOUT[k][x][s], params(&[(v, Type::TEXT)])).await
        }
        (txn, setting) => {
            in_transaction_waiting(exec, txn, setting.as_deref(), || {
                waiting(sql::LOCK[k][x][s], params(&[]))
            })
            .await
        }
    };
    match result {
        Err(e)
            if !xact
                && matches!(
                    e.kind(),
                    ErrorKind::LockTimeout | ErrorKind::Cancelled | ErrorKind::Deadlock
                ) =>
        {
            // The grant may have won the race against the timeout or the cancel
            // (DistributedLock #147): release what we were given.
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
        Ok(()) => Ok(()),
    }
}

/// Runs a lock statement inside a transaction block with `lock_timeout` set to
/// `setting` for that statement alone. In the caller's transaction (`Txn::Caller`)
/// the attempt runs in a savepoint, so a failure leaves the transaction usable and
/// rolls back anything the attempt did; in pglock's own transaction (`Txn::Ours`) a
/// failure is followed by a rollback of the whole transaction by the caller.
pub(crate) async fn in_transaction_waiting<F, Fut>(
    exec: Exec<'_>,
    txn: Txn,
    setting: Option<&str>,
    statement: F,
) -> Result<(), Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
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
        statement().await?;
        if let Some(prev) = prev {
            exec.one(
                sql::RESTORE_LOCK_TIMEOUT,
                &[(&prev, Type::TEXT), (&true, Type::BOOL)],
            )
            .await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    match (attempt, savepoint) {
        (Ok(()), true) => exec.batch(sql::RELEASE_SAVEPOINT).await,
        (Ok(()), false) => Ok(()),
        (Err(e), true) => {
            exec.batch(sql::ROLLBACK_TO_SAVEPOINT).await?;
            Err(e)
        }
        (Err(e), false) => Err(e),
    }
}

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
/// not held.
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
    releasing: crate::queue::Releasing,
) -> bool {
    let pg = conn.pg_shared().clone();
    if pg
        .cached(sql::UNLOCK[KeyParams::new(key).kind()][usize::from(shared)])
        .is_none()
    {
        return false;
    }
    let checks = pg.checks.clone();
    let mut check = Box::pin(async move {
        let r = unlock(Exec::on(&pg), key, shared).await;
        drop(releasing);
        if let Err(e) = r {
            tracing::error!(target: "pglock", key = %key, pid = pg.pid, error = %e,
                "pipelined release failed; closing the session to release whatever it holds");
            pg.close();
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

/// Cancels a server-side lock wait if the acquiring future is dropped while the
/// server is still waiting.
pub(crate) struct CancelOnDrop<'a> {
    armed: bool,
    client: &'a Client,
    conn: Option<&'a Connection>,
    unlock_if_held: Option<(LockKey, bool)>,
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
        CancelOnDrop {
            armed: true,
            client,
            conn,
            unlock_if_held,
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        tracing::debug!(target: "pglock", "lock wait abandoned: cancelling it on the server");
        match (self.conn, self.unlock_if_held) {
            // The session may be granted the lock in the instant before the cancel
            // lands; closing the session is the one way to be sure nothing survives.
            (Some(conn), _) => conn.discard(),
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
        let token = self.client.cancel_token();
        rt::spawn(async move {
            let _ = token.cancel_query(NoTls).await;
        });
    }
}

/// What a guard releases its lock on.
enum Target<'c> {
    Owned(Connection),
    Borrowed(&'c Client),
}

/// Proof that an advisory lock is held. Release it with
/// [`release`](AdvisoryGuard::release) (session locks) or end its transaction with
/// [`commit`](AdvisoryGuard::commit) / [`rollback`](AdvisoryGuard::rollback)
/// (transaction-level locks pglock opened a transaction for).
///
/// Dropping the guard is a best-effort backstop: a session lock is unlocked, a
/// transaction pglock opened is rolled back, in the background; if that fails the
/// connection is closed rather than returned to the pool, so the lock never
/// outlives its guard on a pooled connection.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let guard = pglock_runtime::advisory("rebuild-search-index").acquire().await?;
/// guard.client().batch_execute("REINDEX TABLE documents").await?;
/// if guard.is_lost() {
///     eprintln!("lost the lock while reindexing");
/// }
/// guard.release().await?; // Err(LostBeforeRelease) if the session lost it
/// # Ok(()) }
/// ```
#[must_use = "the lock is released when the guard is dropped; bind it with `let _guard = …`"]
pub struct AdvisoryGuard<'c> {
    target: Option<Target<'c>>,
    key: LockKey,
    shared: bool,
    xact: bool,
    own_txn: bool,
    alias: Cow<'static, str>,
    heartbeat: Option<crate::heartbeat::Heartbeat>,
    /// This task's turn in the in-process queue of the key, given up after the
    /// lock is released.
    turn: Option<crate::queue::Turn>,
}

impl fmt::Debug for AdvisoryGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvisoryGuard")
            .field("key", &self.key)
            .field("shared", &self.shared)
            .field("xact", &self.xact)
            .finish_non_exhaustive()
    }
}

impl<'c> AdvisoryGuard<'c> {
    fn new(target: Target<'c>, lock: &AdvisoryLock, own_txn: bool) -> AdvisoryGuard<'c> {
        tracing::debug!(target: "pglock", key = %lock.key, shared = lock.shared, xact = lock.xact, "advisory lock acquired");
        let heartbeat = match &target {
            Target::Owned(conn) => crate::heartbeat::Heartbeat::start(conn, lock.key, lock.shared),
            Target::Borrowed(_) => None,
        };
        AdvisoryGuard {
            heartbeat,
            turn: None,
            target: Some(target),
            key: lock.key,
            shared: lock.shared,
            xact: lock.xact,
            own_txn,
            alias: lock.alias.clone(),
        }
    }

    /// The key held.
    pub fn key(&self) -> LockKey {
        self.key
    }

    /// Whether the lock is held in shared mode.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Whether the lock is transaction-level.
    pub fn is_xact(&self) -> bool {
        self.xact
    }

    /// The pooled connection holding the lock, for guards from
    /// [`AdvisoryLock::acquire`]; `None` for a caller's client.
    pub fn connection(&self) -> Option<&Connection> {
        match self.target.as_ref() {
            Some(Target::Owned(c)) => Some(c.exposed()),
            _ => None,
        }
    }

    /// The client of the session holding the lock.
    pub fn client(&self) -> &Client {
        match self.target.as_ref().expect("present until consumed") {
            Target::Owned(c) => c.exposed().client(),
            Target::Borrowed(c) => c,
        }
    }

    /// Whether the heartbeat has found the lock lost (its session died, or it was
    /// unlocked behind the guard's back). Always `false` for guards on a caller's
    /// client and when the alias has no heartbeat.
    pub fn is_lost(&self) -> bool {
        self.heartbeat.as_ref().is_some_and(|h| h.is_lost())
    }

    /// Resolves with an [`ErrorKind::LockLost`] error once the heartbeat finds the
    /// lock lost, within one heartbeat interval
    /// ([`Config::heartbeat`](crate::Config::heartbeat)). Never resolves for guards on
    /// a caller's client or without a heartbeat. Use it to stop protected work:
    ///
    /// ```no_run
    /// # async fn work() {}
    /// # async fn f() -> Result<(), pglock_runtime::Error> {
    /// let guard = pglock_runtime::advisory("leader").acquire().await?;
    /// tokio::select! {
    ///     () = work() => guard.release().await?,
    ///     e = guard.lost() => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> Error {
        match &self.heartbeat {
            Some(h) => h.lost().await,
            None => std::future::pending().await,
        }
    }

    fn exec(&self) -> Exec<'_> {
        match self.target.as_ref().expect("present until consumed") {
            Target::Owned(c) => Exec::pooled(c),
            Target::Borrowed(c) => Exec::borrowed(c),
        }
    }

    /// Releases a session lock, checking the server's answer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::LostBeforeRelease`] when the session no longer held the lock;
    /// [`ErrorKind::Usage`] for a transaction-level lock (it ends with its
    /// transaction; the guard then behaves as if dropped); connection errors.
    pub async fn release(mut self) -> Result<(), Error> {
        self.heartbeat = None;
        if self.xact {
            return Err(Error::usage(
                "a transaction-level (`xact`) lock cannot be released by hand: it ends when its \
                 transaction commits or rolls back",
            )
            .with_key(self.key));
        }
        let r = unlock(self.exec(), self.key, self.shared).await;
        if r.is_err() {
            if let Some(Target::Owned(c)) = &self.target {
                c.discard();
            }
        }
        self.target = None;
        r.map_err(|e| e.with_key(self.key).with_alias(&self.alias))
    }

    /// Commits the transaction pglock opened for a transaction-level lock, which
    /// releases the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] when the guard did not open a transaction (a session
    /// lock, or a lock taken in the caller's transaction); `COMMIT` failures.
    pub async fn commit(self) -> Result<(), Error> {
        self.end(sql::COMMIT).await
    }

    /// Rolls back the transaction pglock opened for a transaction-level lock.
    ///
    /// # Errors
    ///
    /// As [`commit`](AdvisoryGuard::commit).
    pub async fn rollback(self) -> Result<(), Error> {
        self.end(sql::ROLLBACK).await
    }

    async fn end(mut self, statement: &'static str) -> Result<(), Error> {
        self.heartbeat = None;
        if !self.own_txn {
            return Err(Error::usage(
                "this guard did not open a transaction: release a session lock with `release()`, \
                 and end your own transaction yourself",
            )
            .with_key(self.key));
        }
        let r = self.exec().batch(statement).await;
        if r.is_err() {
            if let Some(Target::Owned(c)) = &self.target {
                c.discard();
            }
        }
        self.target = None;
        r
    }
}

impl Drop for AdvisoryGuard<'_> {
    fn drop(&mut self) {
        self.heartbeat = None;
        let Some(target) = self.target.take() else {
            return;
        };
        let (key, shared) = (self.key, self.shared);
        // The next task of this process queued for the key moves up once the
        // lock is actually released.
        let turn = self.turn.take();
        match target {
            Target::Owned(conn) if self.own_txn => {
                rt::spawn(async move {
                    if Exec::pooled(&conn).batch(sql::ROLLBACK).await.is_err() {
                        conn.discard();
                    }
                    drop(turn);
                });
            }
            Target::Owned(_) if self.xact => {}
            Target::Owned(conn) => {
                rt::spawn(async move {
                    if unlock(Exec::pooled(&conn), key, shared).await.is_err() {
                        conn.discard();
                    }
                    drop(turn);
                });
            }
            Target::Borrowed(_) if self.xact => {}
            Target::Borrowed(client) => {
                tracing::warn!(target: "pglock", key = %key, "advisory guard dropped without release(): unlocking in the background");
                send_now(client.batch_execute(&sql::unlock_literal(key, shared)));
            }
        }
    }
}
