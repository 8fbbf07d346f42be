//! `lock_timeout` primitives: the range of a lock wait limit, and setting and
//! restoring `lock_timeout` on a connection.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::error::{Error, ErrorKind};
use crate::pool::connection::Connection;
use crate::sql;
use crate::wire::exec::first_row;
use crate::wire::send_now::send_now;

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
    let row = first_row(&rows)
        .ok_or_else(|| Error::new(ErrorKind::Database, "setting lock_timeout returned no row"))?;
    Ok(Applied {
        prev: row.get(0).unwrap_or("0").to_owned(),
        local: row.get(2) == Some("t"),
    })
}

/// Restores a saved value.
pub(crate) async fn restore(conn: &Connection, applied: &Applied) -> Result<(), Error> {
    let r = conn
        .exec()
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

/// Whether `e` says the transaction is aborted (SQLSTATE 25P02).
pub(crate) fn is_aborted(e: &Error) -> bool {
    e.as_postgres()
        .and_then(|p| p.code())
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
}
