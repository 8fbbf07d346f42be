//! Not public API: what `#[advisory_lock]`, `#[lock_timeout]` and `#[prioritize]`
//! expand to, and the statements `pglock-bench` times on a client of its own.
//! Anything here may change in any release.

use std::borrow::Cow;
use std::future::Future;

use core::time::Duration;

pub use crate::api::prioritize::Prioritize;
pub use crate::key::KeyHash;
pub use crate::lock::watchdog::PrioritizeAction;

use crate::api::on_fail::{Raise, Skipped};
use crate::error::Error;
use crate::key::{LockKey, ToLockKey};
use crate::lock::names::{self, Name};
use crate::lock::slot::SlotSpec;
use crate::lock::txn::Wait;
use crate::pool::registry::DEFAULT_ALIAS;
use crate::scope::{self, LockSpec, Outcome, Spec, SyncActive};
use crate::slot::{Slot, ToSlot};

/// The statements of pglock's periodic and return paths, for `pglock-bench`,
/// which times them next to a `SELECT 1` on a server holding many locks.
///
/// ```
/// assert!(pglock_runtime::__private::statements::HEARTBEAT.starts_with("/* pglock heartbeat */"));
/// ```
pub mod statements {
    /// The return check and reset of a connection handed to user code
    /// (simple-query protocol).
    pub const RETURN_CHECK: &str = crate::sql::RETURN_CHECK;
    /// The heartbeat's check of a held lock (prepared once per session).
    pub const HEARTBEAT: &str = crate::sql::HEARTBEAT;
    /// The periodic look at what a `lock_timeout` body's session (`$1`, an
    /// `int4`) waits for.
    pub const LOCK_WAIT: &str = crate::sql::LOCK_WAIT;
}

/// Converts a `slot = …` expression.
#[inline]
pub fn slot<S: ToSlot + ?Sized>(s: &S) -> Slot {
    s.to_slot()
}

/// A key expression converted with the attribute's hash, and its name when it
/// was made from a string.
#[derive(Debug)]
pub struct Key {
    key: LockKey,
    name: Option<Name>,
}

impl From<LockKey> for Key {
    #[inline]
    fn from(key: LockKey) -> Key {
        Key { key, name: None }
    }
}

/// Converts a key expression with the attribute's hash.
#[inline]
pub fn key<K: ToLockKey + ?Sized>(k: &K, hash: KeyHash) -> Key {
    let (key, name) = k.to_named_key(hash);
    Key {
        key,
        name: name.map(|n| names::intern(key, &n, hash)),
    }
}

/// One annotated call.
#[derive(Debug)]
#[must_use]
pub struct Plan {
    function: &'static str,
    alias: &'static str,
    key: Option<LockKey>,
    name: Option<Name>,
    shared: bool,
    xact: bool,
    wait: Wait,
    lock_timeout: Option<Option<Duration>>,
    prioritize: Option<Prioritize>,
    cancel_on_lost: bool,
    slot: Option<Slot>,
    retry: bool,
    fenced: bool,
}

impl Plan {
    /// `function` is `concat!(module_path!(), "::", "<name>")`, named in events.
    #[inline]
    pub fn new(function: &'static str) -> Plan {
        Plan {
            function,
            alias: DEFAULT_ALIAS,
            key: None,
            name: None,
            shared: false,
            xact: false,
            wait: Wait::Inherit,
            lock_timeout: None,
            prioritize: None,
            cancel_on_lost: false,
            slot: None,
            retry: false,
            fenced: false,
        }
    }

    /// The registry alias.
    #[inline]
    pub fn using(mut self, alias: &'static str) -> Plan {
        self.alias = alias;
        self
    }

    /// Takes an advisory lock on `key`.
    #[inline]
    pub fn advisory(mut self, key: impl Into<Key>) -> Plan {
        let Key { key, name } = key.into();
        self.key = Some(key);
        self.name = name;
        self
    }

    /// Shared mode.
    #[inline]
    pub fn shared(mut self) -> Plan {
        self.shared = true;
        self
    }

    /// Transaction-level lock in a transaction around the body.
    #[inline]
    pub fn xact(mut self) -> Plan {
        self.xact = true;
        self
    }

    /// `None`: wait without limit; `Some(ZERO)`: do not wait; `Some(d)`: at most `d`.
    #[inline]
    pub fn timeout(mut self, t: Option<Duration>) -> Plan {
        self.wait = Wait::from_timeout(t);
        self
    }

    /// `#[lock_timeout]`: `None` for no limit.
    #[inline]
    pub fn lock_timeout(mut self, t: Option<Duration>) -> Plan {
        self.lock_timeout = Some(t);
        self
    }

    /// `on_lost = cancel`: drop the body when the lock is found lost.
    #[inline]
    pub fn on_lost_cancel(mut self) -> Plan {
        self.cancel_on_lost = true;
        self
    }

    /// `once_per = …`: slots of this length on the database's clock.
    #[inline]
    pub fn once_per(mut self, length: Duration) -> Plan {
        self.slot = Some(Slot::every(length));
        self
    }

    /// `slot = …`, converted by [`slot`].
    #[inline]
    pub fn slot(mut self, slot: Slot) -> Plan {
        self.slot = Some(slot);
        self
    }

    /// `retry`: a failed run leaves its slot open.
    #[inline]
    pub fn retry(mut self) -> Plan {
        self.retry = true;
        self
    }

    /// `fenced`: take a fencing term with the lock ([`crate::fencing_token`]).
    #[inline]
    pub fn fenced(mut self) -> Plan {
        self.fenced = true;
        self
    }

    /// `#[prioritize]`. The watchdog connects through the plan's alias, whichever
    /// of `using` and `prioritize` came first (see `spec`).
    #[inline]
    pub fn prioritize(mut self, p: Prioritize) -> Plan {
        self.prioritize = Some(p);
        self
    }

    fn spec(&self, holders: bool) -> Spec {
        Spec {
            alias: Cow::Borrowed(self.alias),
            lock: self.key.map(|key| LockSpec {
                key,
                shared: self.shared,
                xact: self.xact,
                wait: self.wait,
                fenced: self.fenced,
            }),
            lock_timeout: self.lock_timeout,
            prioritize: self
                .prioritize
                .clone()
                .map(|p| (p.using(self.alias).into_rules(), None)),
            cancel_on_lost: self.cancel_on_lost,
            holders,
            name: self.name.clone(),
            slot: self.slot.clone().map(|slot| SlotSpec {
                job: Cow::Borrowed(self.function),
                slot,
                retry: self.retry,
            }),
        }
    }

    fn skipped(&self, e: &Error) {
        let key = self.key.map(|k| k.to_string());
        let holders: Vec<String> = e.holders().iter().map(ToString::to_string).collect();
        if e.is_not_acquired() {
            tracing::debug!(target: "pglock", function = self.function, key = key.as_deref(),
                holders = ?holders, kind = ?e.kind(), "skipped: the lock is held elsewhere");
        } else if let Some(run) = e.previous_run() {
            tracing::debug!(target: "pglock", function = self.function, key = key.as_deref(),
                slot = %run.slot, ran_by = %run.application_name, host = %run.host,
                pid = run.client_pid, started_at = ?run.started_at, outcome = %run.outcome,
                "skipped: this slot already ran");
        } else {
            // Not the expected skip: a broken configuration, connection or grant
            // would otherwise keep the job from running anywhere, silently.
            tracing::error!(target: "pglock", function = self.function, key = key.as_deref(),
                error = %e, "skipped: could not acquire the lock");
        }
    }

    fn undo_failed(&self, e: &Error) {
        tracing::error!(target: "pglock", function = self.function,
            key = self.key.map(|k| k.to_string()).as_deref(), error = %e,
            "the body ran, but releasing its lock scope failed");
    }
}

/// Whether a skipped call should look up who holds the lock: only to log them.
fn skip_holders() -> bool {
    tracing::enabled!(target: "pglock", tracing::Level::DEBUG)
}

/// `on_fail = raise` (and `#[lock_timeout]` / `#[prioritize]` alone), async.
pub async fn raise<R: Raise, F: Future<Output = R>>(plan: Plan, body: F) -> R {
    match Box::pin(scope::run(plan.spec(true), body, R::is_failure)).await {
        Outcome::Ran(r) => r,
        Outcome::RanUndoFailed(r, e) => {
            plan.undo_failed(&e);
            if r.is_failure() {
                r
            } else {
                R::from_error(e)
            }
        }
        Outcome::NotRun(e) | Outcome::Lost(e) => R::from_error(e),
    }
}

/// `on_fail = skip`, async.
pub async fn skip<R: Skipped, F: Future<Output = R>>(plan: Plan, body: F) -> R {
    match Box::pin(scope::run(plan.spec(skip_holders()), body, R::is_failure)).await {
        Outcome::Ran(r) => r,
        Outcome::RanUndoFailed(r, e) => {
            plan.undo_failed(&e);
            r
        }
        Outcome::NotRun(e) => {
            plan.skipped(&e);
            R::skipped()
        }
        Outcome::Lost(e) => {
            plan.undo_failed(&e);
            R::skipped()
        }
    }
}

/// The skips `on_error = raise` keeps: the lock is held elsewhere, or the
/// slot already ran. Every other failure is returned.
fn expected_skip(e: &Error) -> bool {
    e.is_not_acquired() || e.is_already_ran()
}

/// `on_fail = skip, on_error = raise`, async: skips only a busy lock (or a slot
/// that already ran); returns every other error.
pub async fn skip_or_raise<R: Skipped + Raise, F: Future<Output = R>>(plan: Plan, body: F) -> R {
    let spec = plan.spec(skip_holders());
    match Box::pin(scope::run(spec, body, <R as Raise>::is_failure)).await {
        Outcome::Ran(r) => r,
        Outcome::RanUndoFailed(r, e) => {
            plan.undo_failed(&e);
            if Raise::is_failure(&r) {
                r
            } else {
                R::from_error(e)
            }
        }
        Outcome::NotRun(e) if expected_skip(&e) => {
            plan.skipped(&e);
            R::skipped()
        }
        Outcome::NotRun(e) | Outcome::Lost(e) => R::from_error(e),
    }
}

/// Enters a scope for `on_fail = skip, on_error = raise`.
pub fn enter_skip_or_raise<R: Skipped + Raise>(plan: Plan) -> Result<SyncScope, R> {
    match SyncActive::enter(plan.spec(skip_holders())) {
        Ok(active) => Ok(SyncScope { active, plan }),
        Err(e) if expected_skip(&e) => {
            plan.skipped(&e);
            Err(R::skipped())
        }
        Err(e) => Err(R::from_error(e)),
    }
}

/// A scope entered by a plain (sync) annotated function. Leave it with `exit_*`;
/// dropping it (early `return` not rewritten, `?`, panic) rolls back and releases.
#[must_use]
pub struct SyncScope {
    active: SyncActive,
    plan: Plan,
}

impl std::fmt::Debug for SyncScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncScope")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// Enters a scope for `on_fail = raise`; `Err(value)` is what to return at once.
pub fn enter_raise<R: Raise>(plan: Plan) -> Result<SyncScope, R> {
    match SyncActive::enter(plan.spec(true)) {
        Ok(active) => Ok(SyncScope { active, plan }),
        Err(e) => Err(R::from_error(e)),
    }
}

/// Enters a scope for `on_fail = skip`; `Err(value)` is what to return at once.
pub fn enter_skip<R: Skipped>(plan: Plan) -> Result<SyncScope, R> {
    match SyncActive::enter(plan.spec(skip_holders())) {
        Ok(active) => Ok(SyncScope { active, plan }),
        Err(e) => {
            plan.skipped(&e);
            Err(R::skipped())
        }
    }
}

impl SyncScope {
    /// Leaves the scope with the body's value (`on_fail = raise`).
    pub fn exit_raise<R: Raise>(self, value: R) -> R {
        let SyncScope { active, plan } = self;
        match active.exit(value.is_failure()) {
            Ok(()) => value,
            Err(e) => {
                plan.undo_failed(&e);
                if value.is_failure() {
                    value
                } else {
                    R::from_error(e)
                }
            }
        }
    }

    /// Leaves the scope with the body's value (`on_fail = skip`).
    pub fn exit_skip<R: Skipped>(self, value: R) -> R {
        let SyncScope { active, plan } = self;
        if let Err(e) = active.exit(value.is_failure()) {
            plan.undo_failed(&e);
        }
        value
    }
}
