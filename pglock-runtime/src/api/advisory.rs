//! Advisory locks, the public face: the `AdvisoryLock` builder, its acquisitions
//! and guards.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use tokio_postgres::{Client, Transaction};
use tracing::Instrument;

use crate::error::Error;
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::key::{KeyHash, LockKey, ToLockKey};
use crate::lock::advisory::{begin_with, failed, lock, take_turn, unlock, Around};
use crate::lock::heartbeat::Heartbeat;
use crate::lock::names::{self, Name};
use crate::lock::queue::Turn;
use crate::lock::slot::SlotSpec;
use crate::lock::txn::{in_transaction, Txn, Wait};
use crate::lock::{schema, terms};
use crate::metrics;
use crate::pool::connection::Connection;
use crate::pool::frames::scope_or_checkout;
use crate::pool::registry::DEFAULT_ALIAS;
use crate::scope::{self, LockSpec, Spec};
use crate::slot::{Slot, ToSlot};
use crate::sql::SchemaSql;
use crate::wire::exec::Exec;
use crate::wire::send_now::send_now;
use crate::{rt, sql};

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
    /// `once_per` / `slot`, for [`run`](AdvisoryLock::run).
    slot: Option<Slot>,
    retry: bool,
    job: Option<Cow<'static, str>>,
    /// The string the key was made from, recorded on first use.
    name: Option<Name>,
    /// Take a fencing term with the lock.
    fenced: bool,
}

impl fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvisoryLock")
            .field("key", &self.key)
            .field("shared", &self.shared)
            .field("xact", &self.xact)
            .field("wait", &self.wait)
            .field("alias", &self.alias)
            .field("slot", &self.slot)
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
    advisory_with(key, KeyHash::default())
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
    let (key, name) = key.to_named_key(hash);
    let name = name.map(|n| names::intern(key, &n, hash));
    AdvisoryLock {
        name,
        ..AdvisoryLock::new(key)
    }
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
            slot: None,
            retry: false,
            job: None,
            name: None,
            fenced: false,
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

    /// For [`run`](AdvisoryLock::run): a scheduled job that runs at most once per
    /// slot of `length` across every process sharing the database, slots taken
    /// from the database's clock (`#[advisory_lock(once_per = …)]`). A call whose
    /// slot already ran fails with [`ErrorKind::AlreadyRan`] without running its
    /// future. Each run is recorded in pglock's schema (see
    /// [`runs`](crate::runs())).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pglock_runtime::Error> {
    /// use std::time::Duration;
    ///
    /// let ran = pglock_runtime::advisory("reports::hourly")
    ///     .no_wait()
    ///     .once_per(Duration::from_secs(3600))
    ///     .run(async { /* ... */ })
    ///     .await;
    /// match ran {
    ///     Ok(()) => println!("ran this hour's report"),
    ///     Err(e) if e.is_busy() || e.is_already_ran() => {} // another instance has it
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn once_per(mut self, length: Duration) -> AdvisoryLock {
        self.slot = Some(Slot::every(length));
        self
    }

    /// For [`run`](AdvisoryLock::run): a scheduled job whose slot the caller
    /// names (`#[advisory_lock(slot = …)]`): at most one run per slot. See
    /// [`ToSlot`] for when to prefer it to [`once_per`](AdvisoryLock::once_per).
    ///
    /// ```no_run
    /// # async fn f(planned: std::time::SystemTime) -> Result<(), pglock_runtime::Error> {
    /// pglock_runtime::advisory("nightly").no_wait().slot(planned).run(async {}).await?;
    /// # Ok(()) }
    /// ```
    pub fn slot(mut self, slot: impl ToSlot) -> AdvisoryLock {
        self.slot = Some(slot.to_slot());
        self
    }

    /// With a slot: a run that fails (an `Err` from [`run`](AdvisoryLock::run)'s
    /// future cannot be seen, so: a panic) leaves its slot open for another call.
    pub fn retry(mut self, retry: bool) -> AdvisoryLock {
        self.retry = retry;
        self
    }

    /// With a slot: the job's name in the record of runs. Default: the key.
    pub fn job(mut self, name: impl Into<Cow<'static, str>>) -> AdvisoryLock {
        self.job = Some(name.into());
        self
    }

    /// Takes a fencing token with the lock: the next term of the lock's name
    /// in pglock's schema, strictly greater than every token any holder of
    /// this lock got before, read with [`AdvisoryGuard::fencing_token`]. Costs
    /// one more statement per acquisition (none without it), and pglock's
    /// schema (created on first use).
    ///
    /// Fencing matters when the work the lock protects is done *outside* the
    /// lock's own session — files, other databases, other services: a holder
    /// that lost the lock without noticing (a pause, a partition) may still be
    /// writing when the next holder starts. Pass the token along with every
    /// write and let the target reject an older one: in PostgreSQL with
    /// `SELECT pglock.check_term('<name>', <token>)` in the writing
    /// transaction (it fails with SQLSTATE `PGF01` unless the token is the
    /// current term, and holds the next grant back until that transaction
    /// ends), elsewhere by storing the highest token seen (`… WHERE
    /// fence_token <= $token`). Writes on the lock's own session need no
    /// token: they die with the session that held the lock.
    ///
    /// Exclusive locks only (a term orders holders one after another). With
    /// [`run`](AdvisoryLock::run) (and `#[advisory_lock(fenced)]`) the future
    /// reads it with [`fencing_token()`](crate::fencing_token()).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pglock_runtime::Error> {
    /// let guard = pglock_runtime::advisory("exports::daily").fenced().acquire().await?;
    /// let token = guard.fencing_token().expect("asked for");
    /// // write the export with `token`, and let the store refuse older tokens
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn fenced(mut self) -> AdvisoryLock {
        self.fenced = true;
        self
    }

    /// The name terms of this lock are recorded under: the string it was made
    /// from, else its key's number.
    fn term_name(&self) -> String {
        match &self.name {
            Some(n) => n.name.to_string(),
            None => self.key.to_string(),
        }
    }

    /// Uses a registered database alias instead of `"default"`.
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> AdvisoryLock {
        self.alias = alias.into();
        self
    }

    /// The scope `run()` and `run_blocking()` enter. A slot cannot be shared.
    /// `pglock_acquisitions_total` and `pglock_wait_seconds` of an acquisition.
    fn count<T>(&self, r: &Result<T, Error>, started: std::time::Instant) {
        let label = metrics::lock_label(self.key, self.name.as_ref().map(|n| &*n.name));
        let outcome = match r {
            Ok(_) => "acquired",
            Err(e) => scope::outcome_label(e),
        };
        metrics::acquisition(&self.alias, &label, outcome, started.elapsed());
    }

    fn lock_spec(&self) -> LockSpec {
        LockSpec {
            key: self.key,
            shared: self.shared,
            xact: self.xact,
            wait: self.wait,
            fenced: self.fenced,
        }
    }

    pub(crate) fn spec(&self) -> Result<Spec, Error> {
        if self.fenced && self.shared {
            return Err(self.fenced_shared());
        }
        if self.slot.is_some() && self.shared {
            return Err(self.usage(
                "a slot has one run, and shared holders run together: drop `shared()` or the \
                 slot",
            ));
        }
        Ok(Spec {
            alias: self.alias.clone(),
            lock: Some(self.lock_spec()),
            lock_timeout: None,
            prioritize: None,
            cancel_on_lost: self.cancel_on_lost,
            holders: true,
            name: self.name.clone(),
            slot: self.slot.clone().map(|slot| SlotSpec {
                // The job is named as given, else by its lock.
                job: self.job.clone().unwrap_or_else(|| match &self.name {
                    Some(n) => n.name.to_string().into(),
                    None => self.key.to_string().into(),
                }),
                slot,
                retry: self.retry,
            }),
        })
    }

    /// Guards have no slot: a slot belongs to a call that sees its run end.
    fn check_no_slot(&self) -> Result<(), Error> {
        match self.slot {
            Some(_) => Err(self.usage(
                "`once_per` / `slot` are for `run()` (and the attributes), which see the run \
                 end and record how: a guard does not; use `run()`",
            )),
            None => Ok(()),
        }
    }

    fn fenced_shared(&self) -> Error {
        self.usage(
            "a fencing token orders holders one after another, and shared holders hold \
             together: drop `shared()` or `fenced()`",
        )
    }

    fn usage(&self, message: &str) -> Error {
        Error::usage(message)
            .with_key(self.key)
            .with_alias(&self.alias)
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
        // Boxed before the first await, so that the future itself stays small.
        let run = match self.spec() {
            Ok(spec) => Box::pin(scope::run(spec, fut, |_| false)),
            Err(e) => return Err(e),
        };
        run.await.into_result()
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
        self.observed(self.acquire_owned()).await
    }

    /// Runs an acquisition in its span and counts it (`pglock_acquisitions_total`,
    /// `pglock_wait_seconds`).
    async fn observed<T>(
        &self,
        acquisition: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let span = scope::span(
            "acquire",
            &self.alias,
            Some(self.lock_spec()),
            self.name.as_ref(),
        );
        let started = std::time::Instant::now();
        let r = acquisition.instrument(span.clone()).await;
        scope::record_acquired(&span, &r);
        self.count(&r, started);
        r
    }

    async fn acquire_owned(&self) -> Result<AdvisoryGuard<'static>, Error> {
        self.check_no_slot()?;
        if self.fenced && self.shared {
            return Err(self.fenced_shared());
        }
        let (turn, wait) = take_turn(&self.alias, self.key, self.shared, self.wait).await?;
        let (conn, fresh) = scope_or_checkout(&self.alias).await?;
        if let Some(name) = &self.name {
            names::record(&conn, fresh, self.key, name).await?;
        }
        let exec = conn.exec();
        let terms = if self.fenced {
            Some(self.term_statements(&conn, fresh).await?)
        } else {
            None
        };
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
        let around = Around {
            cancel_conn: Some(&conn),
            ..Around::txn(txn)
        };
        let take = lock(exec, self.key, self.shared, self.xact, wait, around);
        let taken = if txn == Txn::Ours {
            begin_with(exec, take).await?
        } else {
            take.await
        };
        match taken.map_err(|e| self.wait.report(e)) {
            Ok(_) => {
                let mut guard = AdvisoryGuard::new(Target::Owned(conn), self, txn == Txn::Ours);
                guard.turn = turn;
                if let Some(statements) = terms {
                    // Dropped on failure: the guard releases the lock.
                    let token = terms::next(guard.exec(), statements, self.key, &self.term_name())
                        .await
                        .map_err(|e| e.with_alias(&self.alias))?;
                    guard.fencing_token = Some(token);
                }
                Ok(guard)
            }

            Err(e) => {
                if txn == Txn::Ours {
                    exec.batch(sql::ROLLBACK).await.ok();
                }
                let e = failed(exec, self.key, e).await.with_alias(&self.alias);
                Err(e.with_lock_name(self.name.as_ref().map(|n| n.name.clone())))
            }
        }
    }

    /// pglock's schema statements for a fenced lock, installing the schema on
    /// `conn` first where that is safe (outside a transaction block).
    async fn term_statements(
        &self,
        conn: &Connection,
        fresh: bool,
    ) -> Result<&'static SchemaSql, Error> {
        if let Some(known) = schema::known(&self.alias) {
            return Ok(known);
        }
        if !fresh && in_transaction(conn.exec()).await? {
            return Err(self.usage(
                "a fenced lock needs pglock's schema, which this process has not seen yet, and \
                 the scope connection is inside a transaction where it cannot be installed: take \
                 one fenced lock outside any transaction first, or install the schema with \
                 `pglock schema`",
            ));
        }
        let config = conn.config();
        schema::ready(
            &self.alias,
            config.schema_name(),
            config.pg_config().get_user(),
            conn.exec(),
        )
        .await
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
        self.observed(self.acquire_borrowed_in_span(client, txn))
            .await
    }

    async fn acquire_borrowed_in_span<'c>(
        &self,
        client: &'c Client,
        txn: Txn,
    ) -> Result<AdvisoryGuard<'c>, Error> {
        self.check_no_slot()?;
        if self.fenced {
            return Err(self.usage(
                "`fenced()` needs pglock's own connection (it installs pglock's schema and \
                 records the term there): take the lock with `acquire()`",
            ));
        }
        // The caller's client is left alone: a clash is still caught.
        if let Some(Name {
            name,
            clash: Some(other),
            ..
        }) = &self.name
        {
            return Err(names::clash(self.key, name, other));
        }
        let exec = Exec::borrowed(client);
        let around = Around::txn(txn);
        match lock(exec, self.key, self.shared, self.xact, self.wait, around).await {
            Ok(_) => Ok(AdvisoryGuard::new(Target::Borrowed(client), self, false)),
            Err(e) => Err(failed(exec, self.key, e).await),
        }
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
    heartbeat: Option<Heartbeat>,
    /// This task's turn in the in-process queue of the key, given up after the
    /// lock is released.
    turn: Option<Turn>,
    /// The `lock` label of its metrics, and when it was granted.
    held_since: Option<(String, std::time::Instant)>,
    /// The term taken with a [`fenced`](AdvisoryLock::fenced) lock.
    fencing_token: Option<u64>,
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
            Target::Owned(conn) => Heartbeat::start(conn, lock.key, lock.xact),
            Target::Borrowed(_) => None,
        };
        let label = metrics::lock_label(lock.key, lock.name.as_ref().map(|n| &*n.name));
        metrics::granted(&lock.alias, &label);
        AdvisoryGuard {
            heartbeat,
            turn: None,
            target: Some(target),
            key: lock.key,
            shared: lock.shared,
            xact: lock.xact,
            own_txn,
            alias: lock.alias.clone(),
            held_since: Some((label, std::time::Instant::now())),
            fencing_token: None,
        }
    }

    /// The fencing token of a [`fenced`](AdvisoryLock::fenced) lock: strictly
    /// greater than every token an earlier holder of the lock got, anywhere in
    /// the fleet. `None` unless asked for.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
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
            Some(Target::Owned(c)) => Some(c.expose()),
            _ => None,
        }
    }

    /// The client of the session holding the lock.
    pub fn client(&self) -> &Client {
        match self.target.as_ref().expect("present until consumed") {
            Target::Owned(c) => c.expose().client(),
            Target::Borrowed(c) => c,
        }
    }

    /// Whether the heartbeat has found the lock lost: its session died or stopped
    /// answering, or (an `xact` lock) its transaction ended. Always `false` for
    /// guards on a caller's client and when the alias has no heartbeat. A lock
    /// that SQL run through [`client`](AdvisoryGuard::client) releases itself
    /// (`pg_advisory_unlock`, `pg_advisory_unlock_all()`) is not seen here: the
    /// heartbeat does not read `pg_locks`, whose cost grows with the server;
    /// [`release`](AdvisoryGuard::release) reports it
    /// ([`ErrorKind::LostBeforeRelease`]).
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
            Target::Owned(c) => c.exec(),
            Target::Borrowed(c) => Exec::borrowed(c),
        }
    }

    /// Releases a session lock, checking the server's answer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::LostBeforeRelease`] when the session no longer held the lock;
    /// [`ErrorKind::Usage`] for a transaction-level lock (it ends with its
    /// transaction; the guard then behaves as if dropped); connection errors, among
    /// them [`ErrorKind::ConnectionLost`] when the server does not answer within
    /// [`Config::answer_deadline`](crate::Config::answer_deadline) (the session is then closed).
    pub async fn release(mut self) -> Result<(), Error> {
        self.heartbeat = None;
        if self.xact {
            return Err(Error::usage(
                "a transaction-level (`xact`) lock cannot be released by hand: it ends when its \
                 transaction commits or rolls back",
            )
            .with_key(self.key));
        }
        let r = match &self.target {
            // A session gone silent (a partition) must not hang the release.
            Some(Target::Owned(c)) => {
                c.within_deadline(
                    "the release of the lock",
                    unlock(c.exec(), self.key, self.shared),
                )
                .await
            }
            _ => unlock(self.exec(), self.key, self.shared).await,
        };
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
        if let Some((label, since)) = self.held_since.take() {
            metrics::released(&self.alias, &label, since.elapsed());
        }
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
                    if conn.exec().batch(sql::ROLLBACK).await.is_err() {
                        conn.discard();
                    }
                    drop(turn);
                });
            }
            Target::Owned(_) if self.xact => {}
            Target::Owned(conn) => {
                rt::spawn(async move {
                    if unlock(conn.exec(), key, shared).await.is_err() {
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
