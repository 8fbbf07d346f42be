#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod activity;
mod advisory;
pub mod blocking;
mod connection;
mod error;
mod exec;
mod key;
mod prioritize;
mod registry;
mod returns;
mod rt;
mod scope;
mod sql;
mod table;
mod timeout;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use activity::{
    blocking_tree, inspect, Backend, BlockingNode, BlockingPair, Holder, Inspector, LockFilter,
    LockInfo,
};
pub use advisory::{advisory, advisory_with, AdvisoryGuard, AdvisoryLock};
pub use connection::{connection, connection_for, Connection};
pub use error::{Error, ErrorKind};
pub use key::{KeyHash, LockKey, ToLockKey};
pub use prioritize::{BlockerAction, Prioritize, PrioritizeAction, Prioritized};
pub use registry::{is_registered, register, Config, DEFAULT_ALIAS};
pub use returns::{Raise, Skipped};
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
