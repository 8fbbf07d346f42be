//! The scope executor behind annotated calls, `lock_timeout` scopes and the sync
//! API: check out (or reuse) the scope connection, set `lock_timeout`, take the
//! lock, run the body with the connection in scope, then undo everything in reverse
//! order on every exit path.

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tracing::Instrument;

use crate::error::{Error, ErrorKind};
use crate::key::LockKey;
use crate::lock::advisory;
use crate::lock::heartbeat::Heartbeat;
use crate::lock::names::{self, Name};
use crate::lock::queue::{Releasing, Turn};
use crate::lock::schema;
use crate::lock::slot::{self, Claim, Claimed, ClaimedRun, SlotSpec};
use crate::lock::terms;
use crate::lock::timeout::{self, Applied};
use crate::lock::txn::{in_transaction, Txn, Wait};
use crate::lock::waits::{self, Looking, Watch};
use crate::lock::watchdog::{Rules, Sink, Watchdog};
use crate::metrics;
use crate::pool::connection::Connection;
use crate::pool::frames::{self, scope_or_checkout};
use crate::run::RunOutcome;
use crate::sql::SchemaSql;
use crate::wire::send_now::send_now;
use crate::{rt, sql};

/// What a scope does.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) alias: Cow<'static, str>,
    pub(crate) lock: Option<LockSpec>,
    pub(crate) lock_timeout: Option<Option<Duration>>,
    /// A watchdog's rules, and where it records its actions.
    pub(crate) prioritize: Option<(Rules, Option<Sink>)>,
    /// Drop the body if the heartbeat finds the lock lost.
    pub(crate) cancel_on_lost: bool,
    /// Look up who holds the lock when it is busy (a second query). `on_fail =
    /// skip` only logs them, so it asks only when that event is enabled.
    pub(crate) holders: bool,
    /// A scheduled call: the lock statement also claims this slot, and the body
    /// runs only if the slot had not run.
    pub(crate) slot: Option<SlotSpec>,
    /// The lock's name, recorded on first use.
    pub(crate) name: Option<Name>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LockSpec {
    pub(crate) key: LockKey,
    pub(crate) shared: bool,
    pub(crate) xact: bool,
    pub(crate) wait: Wait,
    /// Take a fencing term with the lock (exclusive locks only).
    pub(crate) fenced: bool,
}

impl Spec {
    pub(crate) fn new(alias: Cow<'static, str>) -> Spec {
        Spec {
            alias,
            lock: None,
            lock_timeout: None,
            prioritize: None,
            cancel_on_lost: false,
            holders: true,
            slot: None,
            name: None,
        }
    }

    /// The scope's `lock_timeout`: its own, or a prioritize `timeout`.
    pub(crate) fn effective_lock_timeout(&self) -> Option<Option<Duration>> {
        self.lock_timeout.or_else(|| {
            self.prioritize
                .as_ref()
                .and_then(|(p, _)| p.timeout.map(Some))
        })
    }

    /// Names the scope's alias and lock in an error.
    pub(crate) fn label(&self, e: Error) -> Error {
        e.with_alias(&self.alias)
            .with_lock_name(self.name.as_ref().map(|n| n.name.clone()))
    }

    pub(crate) fn lock_timeout(mut self, value: Option<Duration>) -> Spec {
        self.lock_timeout = Some(value);
        self
    }
}

/// How a scope ended.
#[derive(Debug)]
pub(crate) enum Outcome<R> {
    /// The body ran and everything was undone cleanly.
    Ran(R),
    /// The body ran, but undoing failed (commit failed, lock lost, connection lost).
    RanUndoFailed(R, Error),
    /// The body did not run.
    NotRun(Error),
    /// The lock was lost while the body ran, and the body was dropped
    /// (`cancel_on_lost`).
    Lost(Error),
}

impl<R> Outcome<R> {
    /// `Ok` only when the body ran and everything was undone.
    pub(crate) fn into_result(self) -> Result<R, Error> {
        match self {
            Outcome::Ran(r) => Ok(r),
            Outcome::RanUndoFailed(_, e) | Outcome::NotRun(e) | Outcome::Lost(e) => Err(e),
        }
    }
}

/// A scope whose setup succeeded: what to undo.
pub(crate) struct Active {
    conn: Connection,
    fresh: bool,
    applied: Option<Applied>,
    lock: Option<LockSpec>,
    own_txn: bool,
    body_savepoint: bool,
    watchdog: Option<Watchdog>,
    heartbeat: Option<Heartbeat>,
    /// With a `lock_timeout`: the body's lock waits are looked at while it runs.
    waits: Option<Watch>,
    /// This task's turn in the in-process queue of the key (released last).
    turn: Option<Turn>,
    /// The slot this call claimed: its end is recorded before the lock goes.
    claimed: Option<ClaimedRun>,
    /// The body panicked (the claimed run's outcome).
    panicked: bool,
    /// The term a `fenced` lock took, for [`frames::fencing_token`].
    fencing_token: Option<u64>,
    finished: bool,
}

impl Active {
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Sets up a scope. On failure nothing is left behind.
    pub(crate) async fn start(spec: &Spec) -> Result<Active, Error> {
        // Queue behind other tasks of this process before taking a connection.
        let mut spec_wait = None;
        let mut turn = None;
        if let Some(lock) = spec.lock {
            // A scope's lock_timeout bounds the acquisition too, including the time
            // queued in the process: make it the lock's own wait.
            let wait = match (lock.wait, spec.effective_lock_timeout()) {
                (Wait::Inherit, Some(Some(d))) => Wait::Bounded(d),
                (Wait::Inherit, Some(None)) => Wait::Forever,
                (w, _) => w,
            };
            let (t, wait) = advisory::take_turn(&spec.alias, lock.key, lock.shared, wait)
                .await
                .map_err(|e| spec.label(e))?;
            turn = t;
            spec_wait = Some(wait);
        }
        // A bounded wait bounds the wait for a pooled connection too, and what
        // that takes is not left for the server.
        let (conn, fresh) = match spec_wait {
            Some(Wait::Bounded(left)) => {
                let started = std::time::Instant::now();
                let conn = rt::timeout(left, scope_or_checkout(&spec.alias))
                    .await
                    .map_err(|_| {
                        spec.label(
                            Error::new(
                                ErrorKind::LockTimeout,
                                format!(
                                    "no connection of the alias became free within the lock's \
                                     timeout ({}): all are in use; raise `Config::max_size`",
                                    humantime::format_duration(left)
                                ),
                            )
                            .with_waited(left)
                            .with_alias(&spec.alias),
                        )
                    })??;
                let left = left.saturating_sub(started.elapsed());
                spec_wait = Some(if left < Duration::from_millis(1) {
                    Wait::Immediate
                } else {
                    Wait::Bounded(left)
                });
                conn
            }
            _ => scope_or_checkout(&spec.alias).await?,
        };
        let mut active = Active {
            conn,
            fresh,
            applied: None,
            lock: None,
            own_txn: false,
            body_savepoint: false,
            watchdog: None,
            heartbeat: None,
            waits: None,
            turn,
            claimed: None,
            fencing_token: None,
            panicked: false,
            finished: false,
        };
        match active.setup(spec, spec_wait).await {
            Ok(()) => Ok(active),
            Err(e) => {
                // Undo what was done; the error of the setup is the one to report.
                active.undo(true).await.ok();
                Err(spec.label(e))
            }
        }
    }

    async fn setup(&mut self, spec: &Spec, wait: Option<Wait>) -> Result<(), Error> {
        let exec = self.conn.exec();
        // The lock's name once per process; then pglock's schema for a slot:
        // both may install the schema, a transaction of its own.
        if let (Some(name), Some(lock)) = (&spec.name, spec.lock) {
            names::record(&self.conn, self.fresh, lock.key, name).await?;
        }
        let statements = match (&spec.slot, spec.lock) {
            (Some(_), Some(_)) => Some(self.schema(&spec.alias).await?),
            (None, Some(lock)) if lock.fenced => Some(self.schema(&spec.alias).await?),
            _ => None,
        };
        // A transaction-level lock opens its transaction first, so that the scope's
        // lock_timeout is transaction-local (and ends with it).
        let mut txn = Txn::Unknown;
        // `BEGIN` goes on the wire together with the lock statement when nothing
        // has to run in between (no lock_timeout to set, no watchdog to start):
        // one round trip instead of two.
        let mut begin_with_lock = false;
        if let Some(lock) = spec.lock {
            txn = if lock.xact {
                if self.fresh || !in_transaction(exec).await? {
                    if spec.effective_lock_timeout().is_none() && spec.prioritize.is_none() {
                        begin_with_lock = true;
                    } else {
                        exec.batch(sql::BEGIN).await?;
                    }
                    self.own_txn = true;
                    Txn::Ours
                } else {
                    Txn::Caller
                }
            } else if self.fresh {
                Txn::None
            } else {
                Txn::Unknown
            };
        }
        if let Some(value) = spec.effective_lock_timeout() {
            let value = timeout::validate(value)?;
            if exec.behind_pooler() && !self.own_txn && !in_transaction(exec).await? {
                // A session setting would stay on whichever server session ran it.
                return Err(exec.pooler_refusal());
            }
            self.applied = Some(timeout::apply(&self.conn, &value).await?);
        }
        // The watchdog protects the acquisition too.
        if let Some((p, sink)) = &spec.prioritize {
            let pid = self.conn.backend_pid();
            self.watchdog = Some(Watchdog::start(p.clone(), sink.clone(), pid).await?);
        }
        if let Some(lock) = spec.lock {
            let cancel = self.fresh.then_some(&self.conn);
            let claim = spec
                .slot
                .as_ref()
                .zip(statements)
                .map(|(slot, statements)| Claim::new(statements, slot, lock.key));
            // A transaction-level run keeps its claim when its body fails: the body
            // runs in a savepoint, sent right behind the lock statement.
            let around = advisory::Around {
                txn,
                cancel_conn: cancel,
                claim: claim.as_ref(),
            };
            let wait = wait.unwrap_or(lock.wait);
            // The savepoint rides behind the lock statement only when that goes on
            // the wire whole at once (prepared already, nothing set before it);
            // otherwise it follows a claimed run.
            let savepoint = claim.is_some() && lock.xact;
            let pipelined =
                savepoint && advisory::sent_at_once(exec, lock.key, lock.xact, wait, around);
            let take = Box::pin(async {
                let take = advisory::lock(exec, lock.key, lock.shared, lock.xact, wait, around);
                if pipelined {
                    // Polled in order: the lock statement goes first. On a lock
                    // that failed, the savepoint goes with the transaction.
                    let (taken, saved) =
                        futures_util::future::join(take, exec.batch(sql::BODY_SAVEPOINT)).await;
                    self.body_savepoint = saved.is_ok();
                    taken
                } else {
                    take.await
                }
            });
            let taken = if begin_with_lock {
                match advisory::begin_with(exec, take).await {
                    Ok(taken) => taken,
                    Err(e) => {
                        self.own_txn = false;
                        return Err(e);
                    }
                }
            } else {
                take.await
            };
            let claimed = match taken.map_err(|e| lock.wait.report(e)) {
                Ok(claimed) => claimed,
                Err(e) => {
                    if self.own_txn {
                        // Roll back first: the holders query needs a usable session.
                        self.own_txn = false;
                        self.applied = None; // a transaction-local value ends with it
                        exec.batch(sql::ROLLBACK).await?;
                    }
                    return Err(if spec.holders {
                        advisory::failed(exec, lock.key, e).await
                    } else {
                        e.with_key(lock.key)
                    });
                }
            };
            self.lock = Some(lock);
            match claimed {
                Some(Claimed::Run(run)) => {
                    self.claimed = Some(run);
                    if savepoint && !pipelined {
                        exec.batch(sql::BODY_SAVEPOINT).await?;
                        self.body_savepoint = true;
                    }
                }
                // Held, but the slot is taken: the undo of the failed setup
                // releases the lock.
                Some(Claimed::AlreadyRan(previous)) => {
                    let job = spec.slot.as_ref().map_or("", |s| &s.job);
                    return Err(slot::already_ran(previous, job).with_key(lock.key));
                }
                None => {}
            }
            if let (true, Some(statements)) = (lock.fenced, statements) {
                // Held: a failure here is the setup's, whose undo releases it.
                let name = match &spec.name {
                    Some(n) => n.name.to_string(),
                    None => lock.key.to_string(),
                };
                self.fencing_token = Some(terms::next(exec, statements, lock.key, &name).await?);
            }
            self.heartbeat = Heartbeat::start(&self.conn, lock.key, lock.xact);
            if !lock.xact && !self.fresh && in_transaction(exec).await? {
                // A session lock inside the caller's transaction: run the body in a
                // savepoint, so that a database error in it can be rolled back and
                // the unlock still runs.
                exec.batch(sql::BODY_SAVEPOINT).await?;
                self.body_savepoint = true;
            }
        }
        if let (Some(_), Some(Some(limit))) = (&self.applied, spec.effective_lock_timeout()) {
            self.waits = Watch::new(&self.conn, limit);
        }
        Ok(())
    }

    /// pglock's schema on the alias (installed if this process has not seen it
    /// yet): on the scope connection, or, when that is inside a caller's
    /// transaction (which the install would commit), on a connection of its own.
    async fn schema(&self, alias: &str) -> Result<&'static SchemaSql, Error> {
        let config = self.conn.config();
        let (name, role) = (config.schema_name(), config.pg_config().get_user());
        if let Some(ready) = schema::known(alias) {
            return Ok(ready);
        }
        if self.fresh || !in_transaction(self.conn.exec()).await? {
            schema::ready(alias, name, role, self.conn.exec()).await
        } else {
            let own = Connection::checkout(alias).await?;
            schema::ready(alias, name, role, own.exec()).await
        }
    }

    /// Undoes the scope in reverse order: end pglock's transaction (commit unless
    /// `failed`), release the session lock, restore `lock_timeout`. Returns the first
    /// error; the connection is discarded if anything failed.
    pub(crate) async fn undo(&mut self, failed: bool) -> Result<(), Error> {
        let r = self.undo_steps(failed).await;
        // Only now: if this future is dropped part-way, `Drop` still sees an
        // unfinished scope and deals with what is left (a fresh session is closed,
        // which undoes everything; on an outer scope's session the remaining
        // steps are queued). Each step takes its state before awaiting, so a step
        // already on the wire is not sent twice.
        self.finished = true;
        r
    }

    async fn undo_steps(&mut self, failed: bool) -> Result<(), Error> {
        self.heartbeat = None;
        self.waits = None;
        let exec = self.conn.exec();
        let mut first: Option<Error> = None;
        // The watchdog's problems are its own (events, `Prioritized::problems`):
        // they say nothing about the session, nor about the work's result.
        if let Some(w) = self.watchdog.take() {
            w.stop().await;
        }
        let outcome = match (failed, self.panicked) {
            (false, _) => RunOutcome::Succeeded,
            (true, false) => RunOutcome::Failed,
            (true, true) => RunOutcome::Panicked,
        };
        // Innermost first: the body's savepoint, the record of the run, then the
        // transaction around them. A claimed `xact` run sends the three as one
        // batch (one round trip); if a statement of it fails, the server skips
        // the rest, and the steps below run one by one.
        if let (true, true, Some(run), Some(lock)) =
            (self.own_txn, self.body_savepoint, &self.claimed, self.lock)
        {
            let end = if failed {
                sql::ROLLBACK_TO_BODY_SAVEPOINT
            } else {
                sql::RELEASE_BODY_SAVEPOINT
            };
            let batch = format!(
                "{end}; {}; {}",
                run.finish_literal(lock.key, outcome),
                sql::COMMIT
            );
            // Taken before awaiting: a dropped undo must not send them again.
            let (run, savepoint) = (
                self.claimed.take(),
                std::mem::take(&mut self.body_savepoint),
            );
            self.own_txn = false;
            if exec.batch(&batch).await.is_err() {
                (self.claimed, self.body_savepoint, self.own_txn) = (run, savepoint, true);
            }
        }
        if self.body_savepoint {
            self.body_savepoint = false;
            let end = if failed {
                sql::ROLLBACK_TO_BODY_SAVEPOINT
            } else {
                sql::RELEASE_BODY_SAVEPOINT
            };
            if exec.batch(end).await.is_err() && !failed {
                // The body succeeded but left the transaction failed: undo its work.
                if let Err(e) = exec.batch(sql::ROLLBACK_TO_BODY_SAVEPOINT).await {
                    first.get_or_insert(e);
                }
            }
        }
        // A claimed run keeps its record whatever the body did: its transaction
        // is committed (the body's work was rolled back to its savepoint).
        let keep_claim = self.claimed.is_some();
        if let (Some(run), Some(lock)) = (self.claimed.take(), self.lock) {
            let mut r = run.finish(exec, lock.key, outcome).await;
            if !self.own_txn && self.fresh && r.as_ref().is_err_and(timeout::is_aborted) {
                // The body left a transaction of its own failed on the session.
                exec.batch(sql::ROLLBACK).await.ok();
                r = run.finish(exec, lock.key, outcome).await;
            }
            if let Err(e) = r {
                tracing::error!(target: "pglock", key = %lock.key, error = %e,
                    "could not record the end of a scheduled run: it stays `started`");
                first.get_or_insert(e);
            }
        }
        if self.own_txn {
            self.own_txn = false;
            let end = if failed && !keep_claim {
                sql::ROLLBACK
            } else {
                sql::COMMIT
            };
            if let Err(e) = exec.batch(end).await {
                first.get_or_insert(e);
            }
        }
        if let Some(lock) = self.lock.take() {
            if !lock.xact
                && self.fresh
                && first.is_none()
                && self.applied.is_none()
                && self.conn.pipelined_release()
                && !self.conn.is_exposed()
                && !self.conn.session().behind_pooler()
                && !self.conn.is_closed()
            {
                // Only pglock's statements ran on this session, and each
                // succeeded: the unlock cannot find the lock gone unless the
                // session ends, so its reply is checked in the background while
                // the connection goes back to the pool (the next user queues
                // behind the unlock on the wire). The next task of this process
                // queued for the key may go to the server at once: the server
                // orders its lock after this unlock; no-wait tries wait for the
                // reply (`queue::settled`).
                let releasing = Releasing::start(lock.key, self.conn.session());
                if advisory::unlock_pipelined(&self.conn, lock.key, lock.shared, releasing) {
                    self.turn = None;
                    return Ok(());
                }
            }
            if !lock.xact {
                let release = "the release of the lock";
                let unlock = || advisory::unlock(exec, lock.key, lock.shared);
                let mut r = self.conn.within_deadline(release, unlock()).await;
                if self.fresh && r.as_ref().is_err_and(timeout::is_aborted) {
                    // The body opened a transaction on the scope connection and left
                    // it failed. It cannot be committed; roll it back to unlock.
                    exec.batch(sql::ROLLBACK).await.ok();
                    r = self.conn.within_deadline(release, unlock()).await;
                }
                if let Err(e) = r {
                    first.get_or_insert(e);
                }
            }
        }
        if let Some(applied) = self.applied.take() {
            if let Err(e) = timeout::restore(&self.conn, &applied).await {
                first.get_or_insert(e);
            }
        }
        self.turn = None;
        match first {
            None => Ok(()),
            Some(e) => {
                self.conn.discard();
                Err(e)
            }
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The scope was abandoned mid-way (its future dropped, or a sync scope left
        // by unwinding without reaching `exit`).
        if self.fresh {
            // Nobody else uses this session: stop whatever it is running and close it,
            // which releases every lock it holds.
            self.conn.discard();
            self.conn.session().cancel_running();
            return;
        }
        // A nested scope on an outer scope's session: queue the undo statements, in
        // order, behind whatever is in flight. Nobody checks their replies, so the
        // connection must get the server-side return check, which closes it if any
        // of them did not take.
        self.conn.expose();
        if self.own_txn {
            send_now(self.conn.batch_execute(sql::ROLLBACK));
        }
        if self.body_savepoint {
            send_now(self.conn.batch_execute(sql::ROLLBACK_TO_BODY_SAVEPOINT));
        }
        if let Some(lock) = self.lock.take() {
            if !lock.xact {
                send_now(
                    self.conn
                        .batch_execute(&sql::unlock_literal(lock.key, lock.shared)),
                );
            }
        }
        if let Some(applied) = self.applied.take() {
            timeout::restore_now(&self.conn, &applied);
        }
    }
}

/// Runs `body` inside a scope. `is_failure` decides commit or rollback of an `xact`
/// transaction; a panic rolls back, undoes the scope, then resumes unwinding.
pub(crate) async fn run<R, F>(spec: Spec, body: F, is_failure: impl Fn(&R) -> bool) -> Outcome<R>
where
    F: Future<Output = R>,
{
    let span = spec.span();
    let label = spec
        .lock
        .map(|l| metrics::lock_label(l.key, spec.name.as_ref().map(|n| &*n.name)));
    let alias = spec.alias.clone();
    let started = Instant::now();
    let granted = std::sync::OnceLock::new();
    let outcome = run_in_span(spec, body, is_failure, &granted)
        .instrument(span.clone())
        .await;
    record_outcome(&span, &outcome);
    if let Some(label) = label {
        let granted: Option<Instant> = granted.get().copied();
        let waited = granted.unwrap_or_else(Instant::now) - started;
        let outcome_label = match &outcome {
            Outcome::Ran(_) => "ran",
            Outcome::RanUndoFailed(..) => "failed",
            Outcome::NotRun(e) => outcome_label(e),
            Outcome::Lost(_) => "lost",
        };
        metrics::acquisition(&alias, &label, outcome_label, waited);
        if let Some(at) = granted {
            metrics::released(&alias, &label, at.elapsed());
        }
    }
    outcome
}

/// The `outcome` label (metrics) of a call whose lock was not taken (or whose
/// body did not run).
pub(crate) fn outcome_label(e: &Error) -> &'static str {
    NotRun::of(e).label()
}

/// Why a scope's body did not run, as the span and the metrics report it.
#[derive(Clone, Copy)]
enum NotRun {
    Busy,
    AlreadyRan,
    TimedOut,
    Failed,
}

impl NotRun {
    fn of(e: &Error) -> NotRun {
        if e.is_busy() {
            NotRun::Busy
        } else if e.is_already_ran() {
            NotRun::AlreadyRan
        } else if e.is_timeout() {
            NotRun::TimedOut
        } else {
            NotRun::Failed
        }
    }

    /// The metrics' `outcome` label.
    fn label(self) -> &'static str {
        match self {
            NotRun::Busy => "busy",
            NotRun::AlreadyRan => "already_ran",
            NotRun::TimedOut => "timed_out",
            NotRun::Failed => "failed",
        }
    }

    /// The span's `pglock.outcome`.
    fn words(self) -> &'static str {
        match self {
            NotRun::Busy => "busy",
            NotRun::AlreadyRan => "already ran",
            NotRun::TimedOut => "timed out",
            NotRun::Failed => "not run",
        }
    }
}

impl Spec {
    /// The span a scope runs in (the body too, so that its own spans and
    /// events are its children); see [`span`].
    pub(crate) fn span(&self) -> tracing::Span {
        let span = span("scope", &self.alias, self.lock, self.name.as_ref());
        if span.is_disabled() {
            return span;
        }
        if let Some(t) = self.effective_lock_timeout() {
            let t = t.map_or_else(
                || "none".to_owned(),
                |d| humantime::format_duration(d).to_string(),
            );
            span.record("pglock.lock_timeout", t);
        }
        span.record("pglock.prioritize", self.prioritize.is_some());
        span.record("pglock.scheduled", self.slot.is_some());
        span
    }
}

/// The span of a pglock call (`call`: `"scope"` for annotated calls and
/// `run`, `"acquire"` for guards): `pglock`, info level, target `pglock`, with
/// OpenTelemetry's database attributes where they fit (`db.system`,
/// `db.system.name`, `db.operation.name`, `otel.name`, `otel.status_code`,
/// `error.type`) and pglock's own (`pglock.alias`, `pglock.key`,
/// `pglock.lock_name`, `pglock.mode`, `pglock.wait`, `pglock.lock_timeout`,
/// `pglock.prioritize`, `pglock.scheduled`, `pglock.outcome`, recorded when
/// it ends).
pub(crate) fn span(
    call: &'static str,
    alias: &str,
    lock: Option<LockSpec>,
    name: Option<&Name>,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: "pglock",
        "pglock",
        otel.name = tracing::field::Empty,
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        db.system = "postgresql",
        db.system.name = "postgresql",
        db.operation.name = tracing::field::Empty,
        error.type = tracing::field::Empty,
        pglock.call = call,
        pglock.alias = %alias,
        pglock.key = tracing::field::Empty,
        pglock.lock_name = tracing::field::Empty,
        pglock.mode = tracing::field::Empty,
        pglock.wait = tracing::field::Empty,
        pglock.lock_timeout = tracing::field::Empty,
        pglock.prioritize = tracing::field::Empty,
        pglock.scheduled = tracing::field::Empty,
        pglock.outcome = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let Some(lock) = lock else {
        span.record("otel.name", "pglock scope");
        return span;
    };
    let operation = lock.operation();
    span.record("db.operation.name", operation);
    span.record("pglock.key", tracing::field::display(lock.key));
    span.record(
        "pglock.mode",
        match (lock.shared, lock.xact) {
            (false, false) => "exclusive",
            (true, false) => "shared",
            (false, true) => "exclusive, transaction",
            (true, true) => "shared, transaction",
        },
    );
    span.record("pglock.wait", tracing::field::display(lock.wait));
    match name {
        Some(n) => {
            span.record("otel.name", format!("{operation} {}", n.name));
            span.record("pglock.lock_name", &*n.name);
        }
        None => {
            span.record("otel.name", format!("{operation} {}", lock.key));
        }
    }
    span
}

impl LockSpec {
    /// The server function that takes the lock (OpenTelemetry's
    /// `db.operation.name`).
    fn operation(&self) -> &'static str {
        match (self.wait == Wait::Immediate, self.xact, self.shared) {
            (false, false, false) => "pg_advisory_lock",
            (false, false, true) => "pg_advisory_lock_shared",
            (false, true, false) => "pg_advisory_xact_lock",
            (false, true, true) => "pg_advisory_xact_lock_shared",
            (true, false, false) => "pg_try_advisory_lock",
            (true, false, true) => "pg_try_advisory_lock_shared",
            (true, true, false) => "pg_try_advisory_xact_lock",
            (true, true, true) => "pg_try_advisory_xact_lock_shared",
        }
    }
}

/// `pglock.outcome` (and, for a failure, `error.type` and OpenTelemetry's
/// error status) of a finished scope.
fn record_outcome<R>(span: &tracing::Span, outcome: &Outcome<R>) {
    match outcome {
        Outcome::Ran(_) => record(span, "ran", None),
        Outcome::RanUndoFailed(_, e) => record(span, "ran, undo failed", Some(e)),
        Outcome::NotRun(e) => record(span, not_run(e), Some(e)),
        Outcome::Lost(e) => record(span, "lost", Some(e)),
    }
}

/// The span's outcome of a scope whose body did not run.
fn not_run(e: &Error) -> &'static str {
    NotRun::of(e).words()
}

/// `pglock.outcome` of an imperative acquisition.
pub(crate) fn record_acquired<T>(span: &tracing::Span, r: &Result<T, Error>) {
    match r {
        Ok(_) => record(span, "acquired", None),
        Err(e) => record(span, not_run(e), Some(e)),
    }
}

/// Records an outcome; a busy lock and a slot that already ran are expected,
/// not errors.
fn record(span: &tracing::Span, what: &'static str, error: Option<&Error>) {
    if span.is_disabled() {
        return;
    }
    span.record("pglock.outcome", what);
    if let Some(e) = error.filter(|e| !e.is_busy() && !e.is_already_ran()) {
        span.record("error.type", tracing::field::debug(e.kind()));
        span.record("otel.status_code", "ERROR");
    }
}

/// `granted`: set to when the lock was granted, if it was.
async fn run_in_span<R, F>(
    spec: Spec,
    body: F,
    is_failure: impl Fn(&R) -> bool,
    granted: &std::sync::OnceLock<Instant>,
) -> Outcome<R>
where
    F: Future<Output = R>,
{
    // The sub-futures are boxed: nested scopes would otherwise embed each other's
    // state inline, and debug builds give every copy of it its own stack slot
    // (three nested scopes overflowed a 2 MiB test thread).
    let mut active = match Box::pin(Active::start(&spec)).await {
        Ok(a) => a,
        Err(e) => return Outcome::NotRun(e),
    };
    if let Some(lock) = spec.lock {
        let _ = granted.set(Instant::now());
        let label = metrics::lock_label(lock.key, spec.name.as_ref().map(|n| &*n.name));
        metrics::granted(&spec.alias, &label);
    }
    let body = waits::watching(active.waits.as_ref(), AssertUnwindSafe(body).catch_unwind());
    let body = async {
        match (&active.heartbeat, spec.cancel_on_lost) {
            (Some(hb), true) => tokio::select! {
                out = body => Ok(out),
                e = hb.lost() => Err(e),
            },
            _ => Ok(body.await),
        }
    };
    // A fenced lock's token is visible to its body even on an outer scope's
    // connection.
    let out = if active.fresh || active.fencing_token.is_some() {
        Box::pin(frames::scoped(
            active.conn.clone(),
            active.fencing_token,
            body,
        ))
        .await
    } else {
        Box::pin(body).await
    };
    let out = match out {
        Ok(out) => out,
        Err(lost) => {
            // The body is gone; so is the lock. Undo what can be undone.
            Box::pin(active.undo(true)).await.ok();
            return Outcome::Lost(spec.label(lost));
        }
    };
    let failed = match &out {
        Ok(r) => is_failure(r),
        Err(_) => {
            active.panicked = true;
            true
        }
    };
    let undone = Box::pin(active.undo(failed)).await;
    match out {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(r) => match undone {
            Ok(()) => Outcome::Ran(r),
            Err(e) => Outcome::RanUndoFailed(r, spec.label(e)),
        },
    }
}

/// A scope entered from synchronous code: setup and undo run on pglock's runtime
/// while this thread blocks; the body runs on this thread with the connection as
/// the thread's scope connection.
pub(crate) struct SyncActive {
    active: Option<Active>,
    frame: Option<frames::SyncFrameGuard>,
    alias: Cow<'static, str>,
    /// The scope's span, entered on this thread while the body runs.
    span: tracing::span::EnteredSpan,
    /// The looks at the body's lock waits (stopped before the undo).
    looking: Option<Looking>,
}

impl SyncActive {
    pub(crate) fn enter(spec: Spec) -> Result<SyncActive, Error> {
        let alias = spec.alias.clone();
        let span = spec.span().entered();
        let mut active = match rt::block_on(Active::start(&spec)) {
            Ok(a) => a,
            Err(e) => {
                record(&span, not_run(&e), Some(&e));
                return Err(e);
            }
        };
        let frame = (active.is_fresh() || active.fencing_token.is_some())
            .then(|| frames::enter_sync(active.connection().clone(), active.fencing_token));
        let looking = active.waits.take().map(Watch::spawn);
        Ok(SyncActive {
            active: Some(active),
            frame,
            alias,
            span,
            looking,
        })
    }

    pub(crate) fn exit(mut self, failed: bool) -> Result<(), Error> {
        self.looking.take();
        self.frame.take();
        let mut active = self.active.take().expect("present until exit");
        let r = rt::block_on(active.undo(failed)).map_err(|e| e.with_alias(&self.alias));
        match &r {
            Ok(()) => record(&self.span, "ran", None),
            Err(e) => record(&self.span, "ran, undo failed", Some(e)),
        }
        r
    }
}

impl Drop for SyncActive {
    fn drop(&mut self) {
        // Left without `exit`: an early return, `?`, or a panic. Undo as a failure
        // (roll back), blocking, so the lock is gone when the function has returned.
        self.looking.take();
        self.frame.take();
        if let Some(mut active) = self.active.take() {
            self.span.record("pglock.outcome", "left early");
            active.panicked = std::thread::panicking();
            let r = rt::block_on(active.undo(true));
            if let Err(e) = r {
                tracing::error!(target: "pglock", error = %e, "undoing a pglock scope failed");
            }
        }
    }
}
