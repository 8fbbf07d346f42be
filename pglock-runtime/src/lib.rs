#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod activity;
mod advisory;
pub mod blocking;
mod connection;
mod driver;
mod error;
mod exec;
mod heartbeat;
mod key;
mod prioritize;
mod queue;
mod registry;
mod returns;
mod rows;
mod rt;
mod scope;
mod sql;
mod table;
mod timeout;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use pglock_macros::{advisory_lock, lock_timeout, prioritize};

pub use activity::{blocking_tree, inspect, BlockingNode, Inspector, LockFilter};
pub use advisory::{advisory, advisory_with, AdvisoryGuard, AdvisoryLock};
pub use connection::{connection, connection_for, Connection};
pub use error::{Error, ErrorKind};
pub use key::{KeyHash, LockKey, ToLockKey};
pub use prioritize::{BlockerAction, Prioritize, PrioritizeAction, Prioritized};
pub use registry::{is_registered, register, Config, DEFAULT_ALIAS};
pub use returns::{Raise, Skipped};
pub use rows::{Backend, BlockingPair, Holder, LockInfo};
pub use table::{table_lock, Table, TableGuard, TableLock, TableLockMode};
pub use timeout::{lock_timeout, LockTimeout, MAX_LOCK_TIMEOUT};

/// Pool statistics of an alias, for tests and monitoring: `(open, idle)`
/// connections. `None` when the alias is not configured.
///
/// ```
/// assert_eq!(pglock_runtime::pool_status("no-such-alias"), None);
/// ```
pub fn pool_status(alias: &str) -> Option<(usize, usize)> {
    if !is_registered(alias) {
        return None;
    }
    registry::alias(alias).ok().map(|a| a.status())
}

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
