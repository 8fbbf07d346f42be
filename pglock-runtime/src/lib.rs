#![doc = include_str!("docs.md")]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

// Layers, lowest first; a module imports only from its own layer or below, and
// modules of one layer form no cycle (ARCHITECTURE.md; tests/architecture.rs).
// 0, the ground:
mod error;
mod key;
mod leadership;
mod metrics;
mod rows;
mod rt;
mod run;
mod slot;
mod sql;
mod term;
// 1, one server session and the statements run on it:
mod wire;
// 2, aliases, pools, checked-out connections, the scope connection:
mod pool;
// 3, the lock primitives:
mod lock;
// 4, the scope executor:
mod scope;
// 5, the public faces and the introspection views:
mod api;
mod inspect;

pub use api::blocking;

// Not public API: what the attributes expand to (see `api/private.rs`).
#[doc(hidden)]
pub use api::private as __private;

pub use pglock_macros::{advisory_lock, lock_timeout, prioritize};

pub use api::advisory::{advisory, advisory_with, AdvisoryGuard, AdvisoryLock};
pub use api::leader::{leader, Changes, Election, Leader, DEFAULT_GRACE, DEFAULT_RENEW_WAIT};
pub use api::on_fail::{Raise, Skipped};
pub use api::prioritize::{Prioritize, Prioritized};
pub use api::schema::schema_sql;
pub use api::shutdown::{shutdown, shutdown_blocking, Shutdown};
pub use api::table::{table_lock, Table, TableGuard, TableLock, TableLockMode};
pub use api::timeout::{lock_timeout, LockTimeout};
pub use error::{Error, ErrorKind};
pub use inspect::inspector::{inspect, Inspector, LockFilter};
pub use inspect::runs::{runs, Runs};
pub use inspect::terms::{terms, Terms};
pub use inspect::tree::{blocking_tree, BlockingNode};
pub use key::{KeyHash, KeyPart, LockKey, ToLockKey};
pub use leadership::{Change, Revocation};
pub use lock::timeout::MAX_LOCK_TIMEOUT;
pub use lock::watchdog::{BlockerAction, PrioritizeAction};
pub use pool::config::Config;
pub use pool::connection::Connection;
pub use pool::frames::{connection, connection_for, fencing_token};
pub use pool::registry::{is_registered, pool_status, register, PoolStatus, DEFAULT_ALIAS};
pub use rows::{Backend, BlockingPair, Holder, LockInfo};
pub use run::{MissedSlot, PreviousRun, Run, RunOutcome};
pub use slot::{Slot, ToSlot};
pub use term::Term;
pub use wire::pooler::Pooling;
pub use wire::tls::SslMode;

#[cfg(test)]
mod send_tests {
    //! Every future the crate hands out is `Send` (checked at compile time).

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send() {
        let lock = crate::advisory(1);
        assert_send(&lock.acquire());
        assert_send(&lock.try_acquire());
        assert_send(&lock.run(async {}));
        assert_send(&crate::lock_timeout(None).scope(async {}));
        assert_send(&crate::Prioritize::new().run(async {}));
        assert_send(&crate::table_lock(["t"]).acquire());
        assert_send(&crate::connection());
        assert_send(&crate::inspect().locks(&crate::LockFilter::new()));
        assert_send(&crate::terms().list());
        let plan = crate::__private::Plan::new("f").advisory(crate::LockKey::Int(1));
        assert_send(&crate::__private::raise(plan, async {
            Ok::<(), crate::Error>(())
        }));
        let plan = crate::__private::Plan::new("f");
        assert_send(&crate::__private::skip(plan, async {}));
    }
}

#[cfg(test)]
mod size_tests {
    //! Scope futures box their state: nested scopes (annotated functions calling
    //! annotated functions) must not grow the stack by kilobytes per level, which
    //! overflowed 2 MiB test threads in debug builds before.

    #[test]
    fn scope_futures_stay_small() {
        let t = crate::lock_timeout(None);
        let a = crate::advisory(1);
        assert!(std::mem::size_of_val(&t.scope(async {})) <= 64);
        assert!(std::mem::size_of_val(&a.run(async {})) <= 64);
        let plan = crate::__private::Plan::new("f");
        assert!(std::mem::size_of_val(&crate::__private::skip(plan, async {})) <= 1024);
        let plan = crate::__private::Plan::new("f");
        let raise = crate::__private::raise(plan, async { Ok::<(), crate::Error>(()) });
        assert!(std::mem::size_of_val(&raise) <= 1024);
    }
}

/// The repository README's examples, compiled as doctests (the crate's front
/// page is `docs.md`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
