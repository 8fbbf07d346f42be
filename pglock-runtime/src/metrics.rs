//! pglock's metrics, through the `metrics` facade: the application installs a
//! recorder (Prometheus, StatsD, …) or none, and pglock never picks one.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `pglock_acquisitions_total` | counter | `alias`, `lock`, `outcome` | every lock call, by how it ended: `acquired` (a guard), `ran` (an annotated call or `run` whose body ran), `busy`, `already_ran`, `timed_out`, `lost` (the lock was lost while the body ran), `failed` |
//! | `pglock_wait_seconds` | histogram | `alias`, `lock` | from the call to the grant, or to giving up |
//! | `pglock_hold_seconds` | histogram | `alias`, `lock` | from the grant to the release |
//! | `pglock_locks_held` | gauge | `alias`, `lock` | locks held by this process now |
//! | `pglock_locks_lost_total` | counter | `alias`, `lock` | locks the heartbeat found lost while held |
//! | `pglock_pool_connections` | gauge | `alias`, `state` (`open`, `idle`) | the alias's pooled connections, as of the last checkout |
//! | `pglock_watchdog_actions_total` | counter | `alias`, `action` (`terminated`, `cancelled`, `refused`, `dry_run`) | what prioritize watchdogs did to blockers |
//! | `pglock_leader` | gauge | `alias`, `election` | 1 while this process leads the election, else 0 |
//! | `pglock_leadership_changes_total` | counter | `alias`, `election`, `change` (`elected`, `revoked`) | this process's elections and revocations |
//!
//! `lock` is the lock's name when it has one (`billing::send_invoices`), else
//! its key (`42`, `(1,2)`).

use std::time::Duration;

use crate::key::LockKey;

/// `pglock_acquisitions_total`.
pub(crate) const ACQUISITIONS: &str = "pglock_acquisitions_total";
/// `pglock_wait_seconds`.
pub(crate) const WAIT: &str = "pglock_wait_seconds";
/// `pglock_hold_seconds`.
pub(crate) const HOLD: &str = "pglock_hold_seconds";
/// `pglock_locks_held`.
pub(crate) const HELD: &str = "pglock_locks_held";
/// `pglock_locks_lost_total`.
pub(crate) const LOST: &str = "pglock_locks_lost_total";
/// `pglock_pool_connections`.
pub(crate) const POOL: &str = "pglock_pool_connections";
/// `pglock_watchdog_actions_total`.
pub(crate) const WATCHDOG: &str = "pglock_watchdog_actions_total";

/// `pglock_leader`.
pub(crate) const LEADER: &str = "pglock_leader";
/// `pglock_leadership_changes_total`.
pub(crate) const LEADERSHIP_CHANGES: &str = "pglock_leadership_changes_total";

/// This process was elected leader (`true`) or its leadership was revoked.
pub(crate) fn leadership(alias: &str, election: &str, elected: bool) {
    let labels = [
        ("alias", alias.to_owned()),
        ("election", election.to_owned()),
    ];
    metrics::gauge!(LEADER, &labels).set(if elected { 1.0 } else { 0.0 });
    let change = if elected { "elected" } else { "revoked" };
    metrics::counter!(
        LEADERSHIP_CHANGES,
        &[
            ("alias", alias.to_owned()),
            ("election", election.to_owned()),
            ("change", change.to_owned()),
        ]
    )
    .increment(1);
}

/// The `lock` label: the name when there is one, else the key.
pub(crate) fn lock_label(key: LockKey, name: Option<&str>) -> String {
    name.map_or_else(|| key.to_string(), str::to_owned)
}

/// A lock call ended (`outcome` as in the table), after `waited`.
pub(crate) fn acquisition(alias: &str, lock: &str, outcome: &'static str, waited: Duration) {
    let labels = [("alias", alias.to_owned()), ("lock", lock.to_owned())];
    metrics::counter!(
        ACQUISITIONS,
        &[
            ("alias", alias.to_owned()),
            ("lock", lock.to_owned()),
            ("outcome", outcome.to_owned()),
        ]
    )
    .increment(1);
    metrics::histogram!(WAIT, &labels).record(waited.as_secs_f64());
}

/// A lock was granted (`+1`) or released after `held` (`-1`).
pub(crate) fn granted(alias: &str, lock: &str) {
    metrics::gauge!(HELD, "alias" => alias.to_owned(), "lock" => lock.to_owned()).increment(1.0);
}

/// A lock granted earlier is no longer held, after `held`.
pub(crate) fn released(alias: &str, lock: &str, held: Duration) {
    let labels = [("alias", alias.to_owned()), ("lock", lock.to_owned())];
    metrics::gauge!(HELD, &labels).decrement(1.0);
    metrics::histogram!(HOLD, &labels).record(held.as_secs_f64());
}

/// The heartbeat found a lock lost.
pub(crate) fn lost(alias: &str, lock: &str) {
    metrics::counter!(LOST, "alias" => alias.to_owned(), "lock" => lock.to_owned()).increment(1);
}

/// An alias's pooled connections.
pub(crate) fn pool(alias: &str, open: usize, idle: usize) {
    #[allow(clippy::cast_precision_loss)] // connection counts are small
    let (open, idle) = (open as f64, idle as f64);
    metrics::gauge!(POOL, "alias" => alias.to_owned(), "state" => "open").set(open);
    metrics::gauge!(POOL, "alias" => alias.to_owned(), "state" => "idle").set(idle);
}

/// A watchdog did `action` to a blocker.
pub(crate) fn watchdog_action(alias: &str, action: &'static str) {
    metrics::counter!(WATCHDOG, "alias" => alias.to_owned(), "action" => action).increment(1);
}
