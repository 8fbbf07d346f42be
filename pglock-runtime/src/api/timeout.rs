//! `lock_timeout` scopes, the public face: a limit on every lock wait of a block
//! of code.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use crate::error::Error;
use crate::pool::registry::DEFAULT_ALIAS;
use crate::scope::{self, Spec};

/// A `lock_timeout` to apply to a block of code, on the scope connection of an alias.
///
/// Inside the block every statement run on the scope connection (including
/// [`connection()`](crate::connection()) and locks taken with the default wait)
/// gives up waiting for a lock after the limit, with SQLSTATE 55P03. The previous
/// value is restored on every exit: success, error, panic, and rollback of a
/// transaction the block opened. Inside a transaction block the setting is
/// transaction-local, like `SET LOCAL`. Scopes nest.
///
/// # What a statement that gives up waited for
///
/// PostgreSQL's error for a statement that hits the limit ("canceling statement
/// due to lock timeout") names no relation and no session, and when it arrives the
/// wait is over. So while the block runs, every third of the limit, pglock looks
/// at what the scope connection is waiting for (its ungranted lock in `pg_locks`
/// and `pg_blocking_pids`), from a session of the alias's pool that is free at
/// that moment (never the scope connection, whose transaction the timeout aborts).
/// A wait that times out lasts the whole limit, so it is seen. The driver's error,
/// converted into a [`pglock_runtime::Error`](crate::Error) inside the block (the
/// `?` of a block returning `Result<_, pglock_runtime::Error>`, or
/// `pglock_runtime::Error::from(e)` where the block has an error type of its own),
/// then names the relation ([`Error::relation`](crate::Error::relation), also for
/// a row lock) and the sessions that blocked it
/// ([`Error::holders`](crate::Error::holders), each with its lock mode):
///
/// ```text
/// lock timeout (database alias `default`): canceling statement due to lock timeout,
/// waiting for AccessShareLock on relation `public.orders`; held by pid 4242
/// (application_name `psql`) from 10.0.0.7, idle in transaction for 31s, …
/// ```
///
/// A block that ends within a third of its limit costs one timer. Nothing is
/// named when no pooled session was free to look (a pool of one), behind a
/// transaction pooler, or when the error is converted after the block ended.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// pglock_runtime::lock_timeout(Duration::from_secs(5))
///     .scope(async {
///         let db = pglock_runtime::connection().await?;
///         db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await??;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a LockTimeout does nothing until `scope` is called"]
pub struct LockTimeout {
    value: Option<Duration>,
    alias: Cow<'static, str>,
}

/// A `lock_timeout` of `limit` (`None`: no limit) on the `"default"` alias.
///
/// ```
/// use std::time::Duration;
///
/// let t = pglock_runtime::lock_timeout(Duration::from_millis(250));
/// let unlimited = pglock_runtime::lock_timeout(None);
/// # let _ = (t, unlimited);
/// ```
pub fn lock_timeout(limit: impl Into<Option<Duration>>) -> LockTimeout {
    LockTimeout {
        value: limit.into(),
        alias: Cow::Borrowed(DEFAULT_ALIAS),
    }
}

impl LockTimeout {
    /// Applies to a registered alias instead of `"default"`.
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> LockTimeout {
        self.alias = alias.into();
        self
    }

    /// Runs `fut` with the limit set on the scope connection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Configuration`](crate::ErrorKind::Configuration) for a zero or
    /// out-of-range limit; checkout and connection errors; a failure to restore the
    /// previous value (the connection is then discarded). The future's own output
    /// is returned inside `Ok`.
    pub async fn scope<F: Future>(&self, fut: F) -> Result<F::Output, Error> {
        let spec = Spec::new(self.alias.clone()).lock_timeout(self.value);
        Box::pin(scope::run(spec, fut, |_| false))
            .await
            .into_result()
    }

    /// The blocking form of [`scope`](LockTimeout::scope), for synchronous code.
    ///
    /// # Errors
    ///
    /// As [`scope`](LockTimeout::scope).
    pub fn scope_blocking<T>(&self, f: impl FnOnce() -> T) -> Result<T, Error> {
        let spec = Spec::new(self.alias.clone()).lock_timeout(self.value);
        let active = scope::SyncActive::enter(spec)?;
        let out = f();
        active.exit(false).map(|()| out)
    }
}
