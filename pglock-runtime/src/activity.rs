//! Who holds a lock: sessions from `pg_locks` joined to `pg_stat_activity`.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

use crate::error::Error;
use crate::key::LockKey;
use crate::sql;

/// A session holding a lock that pglock could not take, as the server saw it at the
/// moment acquisition failed.
///
/// PostgreSQL does not record when a lock was granted; [`Holder::xact_start`] bounds
/// it for transaction-level locks and [`Holder::backend_start`] for session locks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Backend process id (`pg_stat_activity.pid`).
    pub pid: i32,
    /// The holder's `application_name` (empty when it set none).
    pub application_name: String,
    /// The role it is connected as.
    pub user: Option<String>,
    /// Its client address; `None` for Unix-socket connections.
    pub client_addr: Option<String>,
    /// When the backend started.
    pub backend_start: Option<SystemTime>,
    /// When its current transaction started, if one is open.
    pub xact_start: Option<SystemTime>,
    /// When its `state` last changed.
    pub state_change: Option<SystemTime>,
    /// `active`, `idle`, `idle in transaction`, …
    pub state: Option<String>,
    /// Its current or most recent query.
    pub query: String,
    /// The lock mode it holds (`ExclusiveLock`, `ShareLock`, `AccessExclusiveLock`, …).
    pub mode: String,
}

impl Holder {
    pub(crate) fn from_row(row: &Row) -> Holder {
        Holder {
            pid: row.get(0),
            application_name: row.get::<_, Option<String>>(1).unwrap_or_default(),
            user: row.get(2),
            client_addr: row.get(3),
            backend_start: row.get(4),
            xact_start: row.get(5),
            state_change: row.get(6),
            state: row.get(7),
            query: row.get::<_, Option<String>>(8).unwrap_or_default(),
            mode: row.get(9),
        }
    }

    /// How long its state has been unchanged (for an idle holder: how long it has
    /// been idle while holding the lock).
    pub fn in_state_for(&self) -> Option<Duration> {
        self.state_change
            .and_then(|t| SystemTime::now().duration_since(t).ok())
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " (application_name `{}`)", self.application_name)?;
        }
        if let Some(addr) = &self.client_addr {
            write!(f, " from {addr}")?;
        }
        if let Some(state) = &self.state {
            write!(f, ", {state}")?;
            if let Some(d) = self.in_state_for() {
                let d = Duration::from_millis(d.as_millis() as u64);
                write!(f, " for {}", humantime::format_duration(d))?;
            }
        }
        if let Some(start) = self.backend_start {
            write!(
                f,
                ", connected at {}",
                humantime::format_rfc3339_seconds(start)
            )?;
        }
        Ok(())
    }
}

/// The sessions other than `client`'s holding `key`.
pub(crate) async fn advisory_holders(
    client: &tokio_postgres::Client,
    key: LockKey,
) -> Result<Vec<Holder>, Error> {
    let (c, o, s) = key.pg_locks_ids();
    let rows = client
        .query(sql::ADVISORY_HOLDERS, &[&c, &o, &s])
        .await
        .map_err(Error::from_pg)?;
    Ok(rows.iter().map(Holder::from_row).collect())
}

/// The sessions other than `client`'s holding a lock on one of `relations`
/// (quoted, possibly schema-qualified names).
pub(crate) async fn relation_holders(
    client: &tokio_postgres::Client,
    relations: &[String],
) -> Result<Vec<Holder>, Error> {
    let rows = client
        .query(sql::RELATION_HOLDERS, &[&relations])
        .await
        .map_err(Error::from_pg)?;
    Ok(rows.iter().map(Holder::from_row).collect())
}
