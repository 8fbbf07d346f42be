//! The synchronous API: the same locks and scope connection for plain functions.
//!
//! Everything here blocks the calling thread and works from anywhere: outside any
//! runtime, and on a thread of a tokio runtime (multi-thread or current-thread),
//! without the "cannot start a runtime from within a runtime" panic. The I/O runs
//! on pglock's own runtime while the caller waits.
//!
//! ```no_run
//! use pglock_runtime::{advisory, blocking};
//!
//! fn rebuild_cache() -> Result<(), pglock_runtime::Error> {
//!     let guard = advisory("cache-rebuild").acquire_blocking()?;
//!     let db = blocking::connection()?; // the session holding the lock
//!     db.batch_execute("REFRESH MATERIALIZED VIEW cache")?;
//!     guard.release()
//! }
//! ```

use std::fmt;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, SimpleQueryMessage};

use crate::api::advisory::{AdvisoryGuard, AdvisoryLock};
use crate::api::table::{TableGuard, TableLock};
use crate::error::{Error, ErrorKind};
use crate::key::LockKey;
use crate::pool::connection::Connection;
use crate::pool::frames;
use crate::rt::block_on;
use crate::scope::SyncActive;

impl AdvisoryLock {
    /// The blocking form of [`acquire`](AdvisoryLock::acquire). Inside a sync scope
    /// (a plain annotated function) the lock is taken on the scope connection.
    ///
    /// # Errors
    ///
    /// As [`acquire`](AdvisoryLock::acquire).
    pub fn acquire_blocking(&self) -> Result<BlockingGuard, Error> {
        block_on(self.acquire()).map(|g| BlockingGuard { inner: Some(g) })
    }

    /// The blocking form of [`try_acquire`](AdvisoryLock::try_acquire).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](AdvisoryLock::try_acquire).
    pub fn try_acquire_blocking(&self) -> Result<Option<BlockingGuard>, Error> {
        block_on(self.try_acquire()).map(|g| g.map(|g| BlockingGuard { inner: Some(g) }))
    }

    /// Runs `f` while holding the lock, with the lock's connection as the thread's
    /// scope connection ([`connection`]). A transaction-level lock runs `f` in a
    /// transaction that is committed when `f` returns and rolled back if it panics.
    /// The lock is released before this returns, also when `f` panics.
    ///
    /// # Errors
    ///
    /// As [`acquire`](AdvisoryLock::acquire), plus release errors
    /// ([`ErrorKind::LostBeforeRelease`](crate::ErrorKind::LostBeforeRelease)).
    pub fn run_blocking<T>(&self, f: impl FnOnce() -> T) -> Result<T, Error> {
        let active = SyncActive::enter(self.spec()?)?;
        let out = f();
        active.exit(false).map(|()| out)
    }
}

/// A held advisory lock, for synchronous code. Dropping it releases the lock before
/// the drop returns (blocking), or closes its connection if that fails.
///
/// ```no_run
/// let guard = pglock_runtime::advisory(7).acquire_blocking()?;
/// guard.connection().execute("UPDATE jobs SET owner = 'me' WHERE id = 7", &[])?;
/// guard.release()?;
/// # Ok::<(), pglock_runtime::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped; bind it with `let _guard = …`"]
pub struct BlockingGuard {
    inner: Option<AdvisoryGuard<'static>>,
}

impl fmt::Debug for BlockingGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BlockingGuard").field(&self.inner).finish()
    }
}

impl BlockingGuard {
    fn guard(&self) -> &AdvisoryGuard<'static> {
        self.inner.as_ref().expect("present until consumed")
    }

    /// The key held.
    pub fn key(&self) -> LockKey {
        self.guard().key()
    }

    /// The connection holding the lock.
    pub fn connection(&self) -> BlockingConnection {
        BlockingConnection {
            conn: self
                .guard()
                .connection()
                .expect("blocking guards own their connection")
                .clone(),
        }
    }

    /// Releases a session lock, checking the server's answer.
    ///
    /// # Errors
    ///
    /// As [`AdvisoryGuard::release`].
    pub fn release(mut self) -> Result<(), Error> {
        block_on(self.inner.take().expect("present until consumed").release())
    }

    /// Commits the transaction pglock opened for a transaction-level lock.
    ///
    /// # Errors
    ///
    /// As [`AdvisoryGuard::commit`].
    pub fn commit(mut self) -> Result<(), Error> {
        block_on(self.inner.take().expect("present until consumed").commit())
    }

    /// Rolls back the transaction pglock opened for a transaction-level lock.
    ///
    /// # Errors
    ///
    /// As [`AdvisoryGuard::rollback`].
    pub fn rollback(mut self) -> Result<(), Error> {
        block_on(
            self.inner
                .take()
                .expect("present until consumed")
                .rollback(),
        )
    }
}

impl Drop for BlockingGuard {
    fn drop(&mut self) {
        let Some(guard) = self.inner.take() else {
            return;
        };
        let r = if guard.is_xact() {
            block_on(guard.rollback())
        } else {
            block_on(guard.release())
        };
        if let Err(e) = r {
            if !e.is_configuration() {
                tracing::warn!(target: "pglock", error = %e, "releasing a dropped blocking guard failed");
            }
        }
    }
}

impl TableLock {
    /// The blocking form of [`acquire`](TableLock::acquire).
    ///
    /// ```no_run
    /// let guard = pglock_runtime::table_lock(["ledger"]).acquire_blocking()?;
    /// guard.connection().execute("INSERT INTO ledger VALUES (1)", &[])?;
    /// guard.commit()?;
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](TableLock::acquire).
    pub fn acquire_blocking(&self) -> Result<BlockingTableGuard, Error> {
        block_on(self.acquire()).map(|g| BlockingTableGuard { inner: Some(g) })
    }
}

/// Table locks held in a transaction pglock opened, for synchronous code. Dropping
/// it rolls the transaction back before the drop returns.
#[must_use = "the transaction holding the table locks is rolled back when the guard is dropped"]
#[derive(Debug)]
pub struct BlockingTableGuard {
    inner: Option<TableGuard>,
}

impl BlockingTableGuard {
    /// The connection holding the locks.
    pub fn connection(&self) -> BlockingConnection {
        BlockingConnection {
            conn: self
                .inner
                .as_ref()
                .expect("present until consumed")
                .connection()
                .clone(),
        }
    }

    /// Commits, releasing the table locks.
    ///
    /// # Errors
    ///
    /// As [`TableGuard::commit`].
    pub fn commit(mut self) -> Result<(), Error> {
        block_on(self.inner.take().expect("present until consumed").commit())
    }

    /// Rolls back, releasing the table locks.
    ///
    /// # Errors
    ///
    /// As [`TableGuard::rollback`].
    pub fn rollback(mut self) -> Result<(), Error> {
        block_on(
            self.inner
                .take()
                .expect("present until consumed")
                .rollback(),
        )
    }
}

impl Drop for BlockingTableGuard {
    fn drop(&mut self) {
        if let Some(g) = self.inner.take() {
            if let Err(e) = block_on(g.rollback()) {
                if e.kind() != ErrorKind::Usage {
                    tracing::warn!(target: "pglock", error = %e, "rolling back a dropped table guard failed");
                }
            }
        }
    }
}

/// The scope connection for synchronous code: inside a plain annotated function (or
/// [`AdvisoryLock::run_blocking`]) the session holding its lock; elsewhere a fresh
/// checkout of the `"default"` alias.
///
/// # Errors
///
/// As [`crate::connection()`].
pub fn connection() -> Result<BlockingConnection, Error> {
    block_on(frames::connection()).map(|conn| BlockingConnection { conn })
}

/// Like [`connection`], for a registered alias.
///
/// # Errors
///
/// As [`crate::connection()`].
pub fn connection_for(alias: &str) -> Result<BlockingConnection, Error> {
    block_on(frames::connection_for(alias)).map(|conn| BlockingConnection { conn })
}

/// A pooled connection with blocking methods. Returned to its pool (after the same
/// cleanliness check as [`Connection`]) when the last handle is dropped.
///
/// ```no_run
/// let db = pglock_runtime::blocking::connection()?;
/// let n: i64 = db.query_one("SELECT count(*) FROM pg_locks", &[])?.get(0);
/// # Ok::<(), pglock_runtime::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BlockingConnection {
    conn: Connection,
}

impl BlockingConnection {
    /// The async handle to the same session.
    pub fn as_async(&self) -> &Connection {
        &self.conn
    }

    /// The server process id of this session.
    pub fn backend_pid(&self) -> i32 {
        self.conn.backend_pid()
    }

    /// Runs a statement, returning the number of rows it affected.
    ///
    /// # Errors
    ///
    /// The server's error, classified ([`Error::kind`]).
    pub fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        block_on(self.conn.execute(sql, params)).map_err(Error::from)
    }

    /// Runs a query, returning its rows.
    ///
    /// # Errors
    ///
    /// As [`execute`](BlockingConnection::execute).
    pub fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        block_on(self.conn.query(sql, params)).map_err(Error::from)
    }

    /// Runs a query that returns exactly one row.
    ///
    /// # Errors
    ///
    /// As [`execute`](BlockingConnection::execute); also when the row count is not 1.
    pub fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        block_on(self.conn.query_one(sql, params)).map_err(Error::from)
    }

    /// Runs a query that returns at most one row.
    ///
    /// # Errors
    ///
    /// As [`execute`](BlockingConnection::execute); also when more than one row comes.
    pub fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        block_on(self.conn.query_opt(sql, params)).map_err(Error::from)
    }

    /// Runs one or more statements separated by `;` with the simple-query protocol.
    ///
    /// # Errors
    ///
    /// As [`execute`](BlockingConnection::execute).
    pub fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        block_on(self.conn.batch_execute(sql)).map_err(Error::from)
    }

    /// Runs statements with the simple-query protocol, returning rows as text.
    ///
    /// # Errors
    ///
    /// As [`execute`](BlockingConnection::execute).
    pub fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        block_on(self.conn.simple_query(sql)).map_err(Error::from)
    }
}
