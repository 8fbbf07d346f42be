//! Table locks, the public face: `LOCK TABLE … IN <mode> MODE [NOWAIT]` inside a
//! transaction.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use crate::error::{Error, ErrorKind};
use crate::lock::holders::relation_holders;
use crate::lock::txn::{in_transaction, in_transaction_waiting, CancelOnDrop, Txn, Wait};
use crate::pool::connection::Connection;
use crate::pool::frames::scope_or_checkout;
use crate::pool::registry::DEFAULT_ALIAS;
use crate::wire::exec::Exec;
use crate::{rt, sql};

/// The eight table lock modes of PostgreSQL, weakest first.
///
/// See the PostgreSQL manual, "Table-Level Locks", for what each conflicts with.
///
/// ```
/// use pglock_runtime::TableLockMode;
///
/// assert_eq!(TableLockMode::default(), TableLockMode::AccessExclusive);
/// assert_eq!(TableLockMode::ShareRowExclusive.as_sql(), "SHARE ROW EXCLUSIVE");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TableLockMode {
    /// `ACCESS SHARE`: what `SELECT` takes.
    AccessShare,
    /// `ROW SHARE`: what `SELECT … FOR UPDATE` takes.
    RowShare,
    /// `ROW EXCLUSIVE`: what `INSERT`, `UPDATE`, `DELETE` take.
    RowExclusive,
    /// `SHARE UPDATE EXCLUSIVE`: `VACUUM`, `CREATE INDEX CONCURRENTLY`.
    ShareUpdateExclusive,
    /// `SHARE`: `CREATE INDEX`.
    Share,
    /// `SHARE ROW EXCLUSIVE`: `CREATE TRIGGER`.
    ShareRowExclusive,
    /// `EXCLUSIVE`: `REFRESH MATERIALIZED VIEW CONCURRENTLY`.
    Exclusive,
    /// `ACCESS EXCLUSIVE`: `ALTER TABLE`, `DROP TABLE`; conflicts with everything.
    #[default]
    AccessExclusive,
}

impl TableLockMode {
    /// All eight modes, weakest first.
    pub const ALL: [TableLockMode; 8] = [
        TableLockMode::AccessShare,
        TableLockMode::RowShare,
        TableLockMode::RowExclusive,
        TableLockMode::ShareUpdateExclusive,
        TableLockMode::Share,
        TableLockMode::ShareRowExclusive,
        TableLockMode::Exclusive,
        TableLockMode::AccessExclusive,
    ];

    /// The mode as written in `LOCK TABLE … IN <mode> MODE`.
    pub fn as_sql(self) -> &'static str {
        match self {
            TableLockMode::AccessShare => "ACCESS SHARE",
            TableLockMode::RowShare => "ROW SHARE",
            TableLockMode::RowExclusive => "ROW EXCLUSIVE",
            TableLockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            TableLockMode::Share => "SHARE",
            TableLockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            TableLockMode::Exclusive => "EXCLUSIVE",
            TableLockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// The mode's name in `pg_locks.mode` (`AccessExclusiveLock`, …).
    pub fn pg_locks_name(self) -> &'static str {
        match self {
            TableLockMode::AccessShare => "AccessShareLock",
            TableLockMode::RowShare => "RowShareLock",
            TableLockMode::RowExclusive => "RowExclusiveLock",
            TableLockMode::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            TableLockMode::Share => "ShareLock",
            TableLockMode::ShareRowExclusive => "ShareRowExclusiveLock",
            TableLockMode::Exclusive => "ExclusiveLock",
            TableLockMode::AccessExclusive => "AccessExclusiveLock",
        }
    }
}

/// A table name, optionally schema-qualified. Names are used verbatim and quoted,
/// never spliced: `Table::new("odd \"name\"; DROP")` locks the table called exactly
/// that.
///
/// Converting from a string splits it at the first `.` into schema and table
/// (`"audit.events"`); use [`Table::new`] for a name that contains a dot.
///
/// ```
/// use pglock_runtime::Table;
///
/// assert_eq!(Table::from("audit.events").to_string(), "\"audit\".\"events\"");
/// assert_eq!(Table::new("a.b").to_string(), "\"a.b\"");
/// assert_eq!(Table::new("x\"y").to_string(), "\"x\"\"y\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    schema: Option<String>,
    name: String,
}

/// PostgreSQL's identifier limit (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_BYTES: usize = 63;

impl Table {
    /// An unqualified table name, used verbatim (found through `search_path`).
    pub fn new(name: impl Into<String>) -> Table {
        Table {
            schema: None,
            name: name.into(),
        }
    }

    /// A schema-qualified table name, both parts verbatim.
    pub fn qualified(schema: impl Into<String>, name: impl Into<String>) -> Table {
        Table {
            schema: Some(schema.into()),
            name: name.into(),
        }
    }

    fn check(&self) -> Result<(), Error> {
        let parts = self.schema.iter().chain(std::iter::once(&self.name));
        for part in parts {
            if part.is_empty() || part.contains('\0') {
                return Err(Error::config(format!(
                    "invalid table name {:?}: names must be non-empty and contain no NUL byte",
                    part
                )));
            }
            // The server would cut a longer name to 63 bytes and lock whatever
            // table has the shorter name.
            if part.len() > MAX_IDENTIFIER_BYTES {
                return Err(Error::config(format!(
                    "invalid table name {part:?}: {} bytes, and PostgreSQL identifiers have at \
                     most {MAX_IDENTIFIER_BYTES} (the server would truncate it and lock a table of \
                     the shorter name)",
                    part.len()
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Table {
    /// The quoted form used in SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", sql::quote_ident(schema))?;
        }
        f.write_str(&sql::quote_ident(&self.name))
    }
}

impl From<&str> for Table {
    fn from(s: &str) -> Table {
        match s.split_once('.') {
            Some((schema, name)) => Table::qualified(schema, name),
            None => Table::new(s),
        }
    }
}

impl From<String> for Table {
    fn from(s: String) -> Table {
        Table::from(s.as_str())
    }
}

impl From<(&str, &str)> for Table {
    fn from((schema, name): (&str, &str)) -> Table {
        Table::qualified(schema, name)
    }
}

/// A lock on one or more tables, taken in one `LOCK TABLE` statement.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
/// use pglock_runtime::{table_lock, TableLockMode};
///
/// let guard = table_lock(["accounts", "audit.events"])
///     .mode(TableLockMode::ShareRowExclusive)
///     .timeout(Duration::from_secs(3))
///     .acquire()
///     .await?;
/// guard.client().execute("UPDATE accounts SET balance = 0", &[]).await?;
/// guard.commit().await?; // the table locks end with the transaction
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a TableLock does nothing until one of its acquire methods is called"]
pub struct TableLock {
    tables: Vec<Table>,
    mode: TableLockMode,
    wait: Wait,
    alias: Cow<'static, str>,
}

/// A lock on `tables` in `ACCESS EXCLUSIVE` mode that waits as the session's
/// `lock_timeout` says, on the `"default"` alias.
pub fn table_lock<I, T>(tables: I) -> TableLock
where
    I: IntoIterator<Item = T>,
    T: Into<Table>,
{
    TableLock {
        tables: tables.into_iter().map(Into::into).collect(),
        mode: TableLockMode::default(),
        wait: Wait::Inherit,
        alias: Cow::Borrowed(DEFAULT_ALIAS),
    }
}

impl TableLock {
    /// The lock mode (default `ACCESS EXCLUSIVE`).
    pub fn mode(mut self, mode: TableLockMode) -> TableLock {
        self.mode = mode;
        self
    }

    /// Waits at most `d`, measured by the server; `Duration::ZERO` means `NOWAIT`.
    pub fn timeout(mut self, d: Duration) -> TableLock {
        self.wait = Wait::from_timeout(Some(d));
        self
    }

    /// `NOWAIT`: fail with [`ErrorKind::Busy`] at once if a conflicting lock is held.
    pub fn no_wait(mut self) -> TableLock {
        self.wait = Wait::Immediate;
        self
    }

    /// Waits without limit, even inside a `lock_timeout` scope.
    pub fn wait_forever(mut self) -> TableLock {
        self.wait = Wait::Forever;
        self
    }

    /// Uses a registered alias instead of `"default"`.
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> TableLock {
        self.alias = alias.into();
        self
    }

    fn statement(&self) -> Result<String, Error> {
        if self.tables.is_empty() {
            return Err(Error::config("a table lock needs at least one table"));
        }
        let names = self
            .tables
            .iter()
            .map(|t| t.check().map(|()| t.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(sql::lock_table(
            &names,
            self.mode.as_sql(),
            self.wait == Wait::Immediate,
        ))
    }

    /// Locks the tables in a transaction: on a fresh connection pglock opens one and
    /// the guard ends it ([`TableGuard::commit`], rollback on drop); inside a scope
    /// whose connection is in a transaction, in that transaction.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Busy`] (`NOWAIT`) or [`ErrorKind::LockTimeout`] with the holders;
    /// [`ErrorKind::Usage`] inside a scope whose connection has no open transaction;
    /// [`ErrorKind::Configuration`] for an empty table list or an invalid name;
    /// [`ErrorKind::Database`] for a table that does not exist.
    pub async fn acquire(&self) -> Result<TableGuard, Error> {
        let stmt = self.statement()?;
        let (conn, fresh) = scope_or_checkout(&self.alias).await?;
        let exec = conn.exec();
        let txn = if fresh {
            exec.batch(sql::BEGIN).await?;
            Txn::Ours
        } else if in_transaction(exec).await? {
            Txn::Caller
        } else {
            return Err(self.outside_transaction().with_alias(&self.alias));
        };
        let cancel = fresh.then_some(&conn);
        match self.lock(exec, &stmt, txn, cancel).await {
            Ok(()) => Ok(TableGuard {
                conn: Some(conn),
                own_txn: txn == Txn::Ours,
            }),
            Err(e) => {
                if txn == Txn::Ours {
                    exec.batch(sql::ROLLBACK).await.ok();
                }
                Err(self.failed(exec, e).await.with_alias(&self.alias))
            }
        }
    }

    /// Like [`acquire`](TableLock::acquire), but `Ok(None)` when a conflicting lock
    /// is held elsewhere ([`ErrorKind::Busy`] or [`ErrorKind::LockTimeout`]).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pglock_runtime::Error> {
    /// match pglock_runtime::table_lock(["reports"]).no_wait().try_acquire().await? {
    ///     Some(guard) => guard.commit().await?,
    ///     None => println!("someone is using `reports`; try later"),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Every other failure of [`acquire`](TableLock::acquire).
    pub async fn try_acquire(&self) -> Result<Option<TableGuard>, Error> {
        match self.acquire().await {
            Ok(g) => Ok(Some(g)),
            Err(e) if e.is_not_acquired() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Locks the tables in the caller's transaction; they stay locked until it
    /// ends. A failure leaves the transaction usable (the attempt runs in a
    /// savepoint).
    ///
    /// # Errors
    ///
    /// As [`acquire`](TableLock::acquire).
    pub async fn acquire_in(&self, txn: &Transaction<'_>) -> Result<(), Error> {
        let stmt = self.statement()?;
        let client: &Client = tokio_postgres::GenericClient::client(txn);
        let exec = Exec::borrowed(client);
        match self.lock(exec, &stmt, Txn::Caller, None).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(exec, e).await),
        }
    }

    fn outside_transaction(&self) -> Error {
        Error::usage(
            "table locks last until the end of a transaction, and the scope connection has no \
             open transaction: take the lock outside any scope (pglock opens a transaction), \
             inside an `xact` scope, or with `acquire_in(&transaction)`",
        )
    }

    async fn lock(
        &self,
        exec: Exec<'_>,
        stmt: &str,
        txn: Txn,
        cancel_conn: Option<&Connection>,
    ) -> Result<(), Error> {
        let setting = self.wait.setting()?;
        let r = in_transaction_waiting(exec, txn, setting.as_deref(), || async {
            let guard = CancelOnDrop::new(exec.client, cancel_conn, None);
            let r = exec.batch(stmt).await;
            guard.disarm();
            r
        })
        .await;
        match (r, self.wait) {
            (Err(e), Wait::Immediate) if e.is_timeout() => {
                Err(Error::new(ErrorKind::Busy, "").with_source_of(e))
            }
            (Err(e), Wait::Bounded(d)) if e.is_timeout() => Err(e.with_waited(d)),
            (r, _) => r,
        }
    }

    async fn failed(&self, exec: Exec<'_>, e: Error) -> Error {
        if !e.is_not_acquired() {
            return e;
        }
        let names: Vec<String> = self.tables.iter().map(ToString::to_string).collect();
        match relation_holders(exec, &names).await {
            Ok(h) => e.with_holders(h),
            Err(_) => e,
        }
    }
}

/// Table locks held in a transaction pglock opened. End it with
/// [`commit`](TableGuard::commit) or [`rollback`](TableGuard::rollback); dropping the
/// guard rolls back in the background. Inside a scope, the locks belong to the
/// scope's transaction and the guard's methods end nothing.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let guard = pglock_runtime::table_lock(["ledger"]).acquire().await?;
/// guard.client().execute("INSERT INTO ledger VALUES (1)", &[]).await?;
/// guard.commit().await?;
/// # Ok(()) }
/// ```
#[must_use = "the transaction holding the table locks is rolled back when the guard is dropped"]
pub struct TableGuard {
    conn: Option<Connection>,
    own_txn: bool,
}

impl fmt::Debug for TableGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableGuard")
            .field("own_txn", &self.own_txn)
            .finish_non_exhaustive()
    }
}

impl TableGuard {
    /// The connection holding the locks (run the protected statements on it).
    pub fn connection(&self) -> &Connection {
        self.conn.as_ref().expect("present until consumed").expose()
    }

    /// The client of the session holding the locks.
    pub fn client(&self) -> &Client {
        self.connection().client()
    }

    /// Commits the transaction, releasing the table locks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] when the locks belong to a scope's transaction;
    /// `COMMIT` failures.
    pub async fn commit(self) -> Result<(), Error> {
        self.end(sql::COMMIT).await
    }

    /// Rolls back the transaction, releasing the table locks.
    ///
    /// # Errors
    ///
    /// As [`commit`](TableGuard::commit).
    pub async fn rollback(self) -> Result<(), Error> {
        self.end(sql::ROLLBACK).await
    }

    async fn end(mut self, statement: &'static str) -> Result<(), Error> {
        let conn = self.conn.take().expect("present until consumed");
        if !self.own_txn {
            return Err(Error::usage(
                "these table locks belong to the surrounding scope's transaction, which ends \
                 with the scope",
            ));
        }
        let r = conn.exec().batch(statement).await;
        if r.is_err() {
            conn.discard();
        }
        r
    }
}

impl Drop for TableGuard {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.own_txn {
            rt::spawn(async move {
                if conn.exec().batch(sql::ROLLBACK).await.is_err() {
                    conn.discard();
                }
            });
        }
    }
}
