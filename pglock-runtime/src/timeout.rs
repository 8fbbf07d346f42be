//! `lock_timeout` scopes: a limit on every lock wait of a block of code.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use tokio_postgres::types::Type;

use crate::connection::Connection;
use crate::error::Error;
use crate::exec::{send_now, Exec};
use crate::registry::DEFAULT_ALIAS;
use crate::scope::{self, Spec};
use crate::sql;

/// The largest `lock_timeout` PostgreSQL accepts (`INT_MAX` milliseconds, about
/// 24.8 days).
///
/// ```
/// assert_eq!(pglock_runtime::MAX_LOCK_TIMEOUT.as_millis(), 2_147_483_647);
/// ```
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Checks a duration used as a lock wait limit.
pub(crate) fn check_duration(d: Duration) -> Result<(), Error> {
    if d > MAX_LOCK_TIMEOUT {
        return Err(Error::config(format!(
            "lock timeout of {} is out of range: PostgreSQL's lock_timeout is at most {} \
             (2147483647 ms); use no limit instead",
            humantime::format_duration(d),
            humantime::format_duration(MAX_LOCK_TIMEOUT)
        )));
    }
    Ok(())
}

/// A `lock_timeout` to apply to a block of code, on the scope connection of an alias.
///
/// Inside the block every statement run on the scope connection (including
/// [`connection()`](crate::connection()) and locks taken with the default wait)
/// gives up waiting for a lock after the limit, with SQLSTATE 55P03. The previous
/// value is restored on every exit: success, error, panic, and rollback of a
/// transaction the block opened. Inside a transaction block the setting is
/// transaction-local, like `SET LOCAL`. Scopes nest.
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

/// Validates a scope's limit: zero is rejected (as in django-pglock: use `None`).
pub(crate) fn validate(value: Option<Duration>) -> Result<String, Error> {
    if let Some(d) = value {
        if d.is_zero() {
            return Err(Error::config(
                "a lock_timeout of zero is not allowed (PostgreSQL reads 0 as \"no limit\"): \
                 pass `None` for no limit",
            ));
        }
        check_duration(d)?;
    }
    Ok(sql::lock_timeout_value(value))
}

/// A `lock_timeout` pglock set and must restore.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    prev: String,
    local: bool,
}

/// Sets the limit on `conn`: for the session, or for the transaction when a
/// transaction block is open. Returns what to restore.
pub(crate) async fn apply(conn: &Connection, value: &str) -> Result<Applied, Error> {
    let rows = conn
        .simple_query(&sql::set_scoped_lock_timeout(value))
        .await
        .map_err(Error::from_pg)?;
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| {
            Error::new(
                crate::ErrorKind::Database,
                "setting lock_timeout returned no row",
            )
        })?;
    Ok(Applied {
        prev: row.get(0).unwrap_or("0").to_owned(),
        local: row.get(2) == Some("t"),
    })
}

/// Restores a saved value.
pub(crate) async fn restore(conn: &Connection, applied: &Applied) -> Result<(), Error> {
    let r = Exec::pooled(conn)
        .one(
            sql::RESTORE_LOCK_TIMEOUT,
            &[(&applied.prev, Type::TEXT), (&applied.local, Type::BOOL)],
        )
        .await;
    match r {
        Ok(_) => Ok(()),
        // A transaction-local value in an aborted transaction disappears with the
        // rollback that must follow.
        Err(e) if applied.local && is_aborted(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Restores without waiting (backstop for a scope dropped before it finished).
pub(crate) fn restore_now(conn: &Connection, applied: &Applied) {
    send_now(conn.batch_execute(&sql::restore_lock_timeout_literal(
        &applied.prev,
        applied.local,
    )));
}

pub(crate) fn is_aborted(e: &Error) -> bool {
    e.as_postgres()
        .and_then(|p| p.code())
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
}
