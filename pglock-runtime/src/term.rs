//! Terms, as pglock's schema records them (`terms` table): for each leadership
//! and each fenced lock, the last fencing token granted and to whom.

use std::fmt;
use std::time::SystemTime;

use tokio_postgres::Row;

use crate::run::write_origin;

/// The last term granted for a name (a [`leader`](crate::leader()) election or
/// a [`fenced`](crate::AdvisoryLock::fenced) lock), read from pglock's schema:
/// the fencing token, who got it, and whether that session still holds the
/// lock — for a leadership, whether it is the current leader.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// if let Some(t) = pglock_runtime::terms().name("scheduler").current().await? {
///     println!("term {} led by pid {} on {} since {:?}", t.term, t.client_pid.unwrap_or(0), t.host, t.since);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Term {
    /// The leadership's or lock's name (a key without one: its number).
    pub name: String,
    /// The term: strictly greater than every term granted before for this name.
    pub term: u64,
    /// The server process (backend) of the session it was granted to.
    pub backend_pid: Option<i32>,
    /// That session's `application_name`.
    pub application_name: String,
    /// The host name of the process it was granted to.
    pub host: String,
    /// The operating-system process id of the process it was granted to.
    pub client_pid: Option<i32>,
    /// When it was granted, on the server's clock.
    pub since: SystemTime,
    /// Whether the session it was granted to still holds the lock: for a
    /// leadership, whether this is the current leader.
    pub holding: bool,
}

impl Term {
    /// Reads a term from the columns of `SchemaSql::terms`.
    pub(crate) fn from_row(row: &Row) -> Term {
        Term {
            name: row.get(0),
            term: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
            backend_pid: row.get(2),
            application_name: row.get::<_, Option<String>>(3).unwrap_or_default(),
            host: row.get::<_, Option<String>>(4).unwrap_or_default(),
            client_pid: row.get(5),
            since: row.get(6),
            holding: row.get(7),
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} term {}", self.name, self.term)?;
        write_origin(f, &self.host, self.client_pid, &self.application_name)?;
        write!(f, " since {}", humantime::format_rfc3339_millis(self.since))?;
        if !self.holding {
            f.write_str(", no longer held")?;
        }
        Ok(())
    }
}
