//! The rows pglock reads from the server's views: sessions holding a lock
//! (`Holder`), server processes (`Backend`), `pg_locks` rows (`LockInfo`) and
//! blocked → blocking pairs, with the code that reads each from a result row.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

use crate::key::LockKey;
use crate::sql;

/// A session holding a lock that pglock could not take, as the server saw it at the
/// moment acquisition failed.
///
/// PostgreSQL does not record when a lock was granted; [`Holder::xact_start`] bounds
/// it for transaction-level locks and [`Holder::backend_start`] for session locks.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let key = pglock_runtime::LockKey::string("nightly");
/// for h in pglock_runtime::inspect().holders(key).await? {
///     println!("{} ({}) holds it, {:?}", h.pid, h.application_name, h.state);
/// }
/// # Ok(()) }
/// ```
///
/// Its `Debug` output (and so an [`Error`](crate::Error)'s, which lands in logs
/// and panic messages) shows the first 60 characters of `query` only: another
/// session's statement can hold secrets (`ALTER ROLE … PASSWORD …`). The field
/// has it whole.
#[derive(Clone, PartialEq, Eq)]
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
    /// The name of the advisory lock it holds, when the lock was made from a
    /// string that pglock recorded (`billing::send_invoices`).
    pub lock_name: Option<String>,
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Holder")
            .field("pid", &self.pid)
            .field("application_name", &self.application_name)
            .field("user", &self.user)
            .field("client_addr", &self.client_addr)
            .field("backend_start", &self.backend_start)
            .field("xact_start", &self.xact_start)
            .field("state_change", &self.state_change)
            .field("state", &self.state)
            .field("query", &query_excerpt(&self.query))
            .field("mode", &self.mode)
            .field("lock_name", &self.lock_name)
            .finish()
    }
}

/// At most this much of another session's query goes into logs (`Debug`,
/// events): it may hold secrets.
const QUERY_EXCERPT: usize = 60;

/// The first [`QUERY_EXCERPT`] characters of `query`, with `…` when cut.
pub(crate) fn query_excerpt(query: &str) -> String {
    match query.char_indices().nth(QUERY_EXCERPT) {
        Some((i, _)) => format!("{}…", &query[..i]),
        None => query.to_owned(),
    }
}

impl Holder {
    /// Reads a holder from the columns of `sql::ADVISORY_HOLDERS` (and
    /// `sql::RELATION_HOLDERS`); `None` for a row of NULLs.
    pub(crate) fn from_row(row: &Row) -> Option<Holder> {
        Some(Holder {
            pid: row.get::<_, Option<i32>>(0)?,
            application_name: row.get::<_, Option<String>>(1).unwrap_or_default(),
            user: row.get(2),
            client_addr: row.get(3),
            backend_start: row.get(4),
            xact_start: row.get(5),
            state_change: row.get(6),
            state: row.get(7),
            query: row.get::<_, Option<String>>(8).unwrap_or_default(),
            mode: row.get::<_, Option<String>>(9).unwrap_or_default(),
            lock_name: None,
        })
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

/// What a session was seen waiting for while it waited: its lock request that
/// was not granted (a `pg_locks` row) and the sessions `pg_blocking_pids` named.
/// Read by the look-ups of `lock/waits.rs`; a statement's lock-timeout error
/// (SQLSTATE 55P03) names no relation, and once it arrives the wait is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockWait {
    /// `relation`, `tuple`, `transactionid`, `advisory`, …
    pub(crate) locktype: String,
    /// The mode requested (`AccessShareLock`, `ShareLock`, …).
    pub(crate) mode: String,
    /// The relation waited on, or whose row was (schema-qualified).
    pub(crate) relation: Option<String>,
    /// The transaction (or virtual transaction) waited on.
    pub(crate) object: Option<String>,
    /// The sessions blocking it, each with its mode on the same object.
    pub(crate) blockers: Vec<Holder>,
}

impl LockWait {
    /// Reads the rows of `sql::LOCK_WAIT` (one per blocker; one with a NULL
    /// blocker when `pg_blocking_pids` named none). `None` when the session was
    /// not waiting.
    pub(crate) fn from_rows(rows: &[Row]) -> Option<LockWait> {
        let first = rows.first()?;
        Some(LockWait {
            locktype: first.get::<_, Option<String>>(10).unwrap_or_default(),
            mode: first.get::<_, Option<String>>(11).unwrap_or_default(),
            relation: first.get(12),
            object: first.get(13),
            blockers: rows.iter().filter_map(Holder::from_row).collect(),
        })
    }
}

impl fmt::Display for LockWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on ", self.mode)?;
        match (self.locktype.as_str(), &self.relation, &self.object) {
            ("relation", Some(r), _) => write!(f, "relation `{r}`"),
            ("tuple", Some(r), _) => write!(f, "a row of `{r}`"),
            ("transactionid", r, Some(x)) => {
                write!(f, "transaction {x}")?;
                match r {
                    Some(r) => write!(f, " (a row of `{r}`)"),
                    None => Ok(()),
                }
            }
            (t, r, _) => {
                let article = if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                write!(f, "{article} {t} lock")?;
                match r {
                    Some(r) => write!(f, " of `{r}`"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A server process, as `pg_stat_activity` shows it.
///
/// Timestamps are the server's; durations are computed against the server clock at
/// the moment of the query ([`Backend::observed_at`]), so client clock skew does not
/// distort them.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// for pair in pglock_runtime::inspect().blocking().await? {
///     let b = &pair.blocking;
///     println!("{} [{}] {:?} for {:?}: {}", b.pid, b.application_name, b.state, b.held_for(), b.query);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backend {
    /// Process id.
    pub pid: i32,
    /// `application_name` (empty when unset).
    pub application_name: String,
    /// Role name.
    pub user: Option<String>,
    /// Client address; `None` for Unix sockets and background processes.
    pub client_addr: Option<String>,
    /// `active`, `idle`, `idle in transaction`, … (`None` for some background
    /// processes).
    pub state: Option<String>,
    /// Current or most recent query.
    pub query: String,
    /// When the current (or last) query started.
    pub query_start: Option<SystemTime>,
    /// When the current transaction started, if one is open.
    pub xact_start: Option<SystemTime>,
    /// When the process started.
    pub backend_start: Option<SystemTime>,
    /// When `state` last changed.
    pub state_change: Option<SystemTime>,
    /// `client backend`, `autovacuum worker`, `walsender`, …
    pub backend_type: Option<String>,
    /// What it is waiting for (`Lock`, `Client`, …), if anything.
    pub wait_event_type: Option<String>,
    /// The specific wait event (`advisory`, `relation`, `ClientRead`, …).
    pub wait_event: Option<String>,
    /// The server's clock when this row was read.
    pub observed_at: SystemTime,
}

fn since(observed: SystemTime, t: Option<SystemTime>) -> Option<Duration> {
    t.map(|t| observed.duration_since(t).unwrap_or_default())
}

impl Backend {
    /// Reads the columns of `sql::backend_columns!()`, starting at column 0.
    pub(crate) fn from_row(row: &Row) -> Backend {
        Backend {
            pid: row.get(0),
            application_name: row.get::<_, Option<String>>(1).unwrap_or_default(),
            user: row.get(2),
            client_addr: row.get(3),
            state: row.get(4),
            query: row.get::<_, Option<String>>(5).unwrap_or_default(),
            query_start: row.get(6),
            xact_start: row.get(7),
            backend_start: row.get(8),
            state_change: row.get(9),
            backend_type: row.get(10),
            wait_event_type: row.get(11),
            wait_event: row.get(12),
            observed_at: row.get(13),
        }
    }

    /// Number of columns `from_row` reads.
    pub(crate) const COLUMNS: usize = 14;

    /// Whether its current or last statement is pglock's heartbeat (the check,
    /// every [`Config::heartbeat`](crate::Config::heartbeat), that a session still
    /// holds the advisory lock it took). Then [`query`](Backend::query) is pglock's
    /// own statement, and what the application ran last is not known to the server.
    pub fn is_pglock_heartbeat(&self) -> bool {
        self.query.starts_with(sql::HEARTBEAT_TAG)
    }

    /// How long its current transaction has been open.
    pub fn xact_duration(&self) -> Option<Duration> {
        since(self.observed_at, self.xact_start)
    }

    /// How long its current (or last) query has been running (or ran).
    pub fn query_duration(&self) -> Option<Duration> {
        since(self.observed_at, self.query_start)
    }

    /// A lower bound of how long it has held the locks it holds: since its
    /// transaction started, or, outside a transaction (session-level advisory
    /// locks), since its state last changed.
    pub fn held_for(&self) -> Option<Duration> {
        since(
            self.observed_at,
            self.xact_start.or(self.state_change).or(self.backend_start),
        )
    }

    /// Whether it is a client session (not autovacuum, a WAL sender, …).
    pub fn is_client(&self) -> bool {
        self.backend_type.as_deref() == Some("client backend")
    }
}

/// One row of `pg_locks`, with the backend that holds or awaits the lock.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use pglock_runtime::{inspect, LockFilter};
///
/// for l in inspect().locks(&LockFilter::new().granted(false)).await? {
///     println!("{} waits {:?} for {} on {:?}", l.pid(), l.wait_duration(), l.mode, l.relation);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// `relation`, `advisory`, `transactionid`, `virtualxid`, `tuple`, `object`, …
    pub locktype: String,
    /// `AccessShareLock`, `ExclusiveLock`, …
    pub mode: String,
    /// Held (`true`) or awaited (`false`).
    pub granted: bool,
    /// When the wait began, for a lock not granted yet.
    pub wait_start: Option<SystemTime>,
    /// Schema-qualified, quoted name of the locked relation, if any.
    pub relation: Option<String>,
    /// Its `pg_class.relkind`: `r` table, `i` index, `S` sequence, `v` view, …
    pub relation_kind: Option<String>,
    /// The advisory key, decoded from `classid` / `objid` / `objsubid`.
    pub key: Option<LockKey>,
    /// The advisory lock's name, when it was made from a string that pglock
    /// recorded (`billing::send_invoices`).
    pub name: Option<String>,
    /// The transaction id for `transactionid` and `virtualxid` locks.
    pub transaction: Option<String>,
    /// The session holding or awaiting the lock.
    pub backend: Backend,
}

impl LockInfo {
    /// Reads the columns of `sql::LOCKS`: a backend, then the lock.
    pub(crate) fn from_row(row: &Row) -> LockInfo {
        let b = Backend::COLUMNS;
        let locktype: String = row.get(b);
        let key = if locktype == "advisory" {
            match (
                row.get::<_, Option<u32>>(b + 6),
                row.get::<_, Option<u32>>(b + 7),
                row.get::<_, Option<i16>>(b + 8),
            ) {
                (Some(c), Some(o), Some(s)) => LockKey::from_pg_locks(c, o, s),
                _ => None,
            }
        } else {
            None
        };
        LockInfo {
            locktype,
            mode: row.get(b + 1),
            granted: row.get(b + 2),
            wait_start: row.get(b + 3),
            relation: row.get(b + 4),
            relation_kind: row.get(b + 5),
            key,
            name: None,
            transaction: row.get(b + 9),
            backend: Backend::from_row(row),
        }
    }

    /// The backend's process id.
    pub fn pid(&self) -> i32 {
        self.backend.pid
    }

    /// How long it has been waiting, for a lock not granted yet.
    pub fn wait_duration(&self) -> Option<Duration> {
        since(self.backend.observed_at, self.wait_start)
    }

    /// How long it has been waiting, or (granted) a lower bound of how long it has
    /// been held ([`Backend::held_for`]).
    pub fn duration(&self) -> Option<Duration> {
        if self.granted {
            self.backend.held_for()
        } else {
            self.wait_duration()
        }
    }
}

/// A backend waiting for a lock, and one backend it waits for.
///
/// See [`Inspector::blocking`](crate::Inspector::blocking).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingPair {
    /// The waiting backend.
    pub blocked: Backend,
    /// The lock it waits for, when the server still shows the wait.
    pub waiting_for: Option<LockInfo>,
    /// A backend it waits for (`pg_blocking_pids`): one holding a conflicting lock,
    /// or queued ahead of it for one.
    pub blocking: Backend,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_does_not_carry_a_whole_foreign_query() {
        let secret =
            "ALTER ROLE app PASSWORD 'correct horse battery staple and then some more text'";
        let h = Holder {
            pid: 1,
            application_name: String::new(),
            user: None,
            client_addr: None,
            backend_start: None,
            xact_start: None,
            state_change: None,
            state: None,
            query: secret.to_owned(),
            mode: "ExclusiveLock".to_owned(),
            lock_name: None,
        };
        let shown = format!("{h:?}");
        assert!(shown.contains("ALTER ROLE app PASSWORD"), "{shown}");
        assert!(!shown.contains("and then some more text"), "{shown}");
        assert_eq!(query_excerpt("short"), "short");
    }

    #[test]
    fn a_lock_wait_says_what_was_waited_for() {
        let wait = |locktype: &str, relation: Option<&str>, object: Option<&str>| {
            LockWait {
                locktype: locktype.to_owned(),
                mode: "ShareLock".to_owned(),
                relation: relation.map(str::to_owned),
                object: object.map(str::to_owned),
                blockers: Vec::new(),
            }
            .to_string()
        };
        assert_eq!(
            wait("relation", Some("public.t"), None),
            "ShareLock on relation `public.t`"
        );
        assert_eq!(
            wait("tuple", Some("public.t"), None),
            "ShareLock on a row of `public.t`"
        );
        assert_eq!(
            wait("transactionid", Some("public.t"), Some("740")),
            "ShareLock on transaction 740 (a row of `public.t`)"
        );
        assert_eq!(
            wait("transactionid", None, Some("740")),
            "ShareLock on transaction 740"
        );
        assert_eq!(
            wait("advisory", None, None),
            "ShareLock on an advisory lock"
        );
        assert_eq!(
            wait("page", Some("public.t"), None),
            "ShareLock on a page lock of `public.t`"
        );
    }
}
