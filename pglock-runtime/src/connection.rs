//! The scope connection: one pooled connection per alias for the duration of an
//! annotated call (or lock, or `lock_timeout` scope), reachable from its body.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool::managed::Object;
use tokio_postgres::Client;

use crate::error::Error;
use crate::registry::{self, Alias, Manager, PgConn, DEFAULT_ALIAS};
use crate::sql;

/// A pooled connection: the scope connection inside a pglock scope, a fresh
/// checkout outside one. Derefs to [`tokio_postgres::Client`].
///
/// Clones share the same server session. When the last clone is dropped the
/// connection goes back to its pool, but only after pglock has checked, on the
/// server, that it is clean: no transaction block open or aborted, no advisory lock
/// held, `lock_timeout` as it was when the connection was opened. A connection that
/// fails the check is closed instead, so whatever it held is released by the server.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let db = pglock_runtime::connection().await?;
/// let n: i64 = db.query_one("SELECT count(*) FROM pg_locks", &[]).await?.get(0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    alias: Arc<Alias>,
    obj: Option<Object<Manager>>,
    /// Set when pglock knows the session is in a state it must not be reused in.
    discard: AtomicBool,
    /// Set once the connection has been handed to user code. Until then pglock
    /// knows every statement it ran and checked each undo step, so the session
    /// goes back to the pool without the server-side return check.
    exposed: AtomicBool,
}

impl Connection {
    pub(crate) fn new(alias: Arc<Alias>, obj: Object<Manager>) -> Connection {
        Connection {
            shared: Arc::new(Shared {
                alias,
                obj: Some(obj),
                discard: AtomicBool::new(false),
                exposed: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn pg(&self) -> &PgConn {
        self.pg_shared()
    }

    /// The session, shareable beyond this checkout (it may be back in the pool,
    /// serving someone else, while a clone of it waits for a reply).
    pub(crate) fn pg_shared(&self) -> &Arc<PgConn> {
        self.shared.obj.as_deref().expect("present until drop")
    }

    /// Whether user code has had this connection.
    pub(crate) fn is_exposed(&self) -> bool {
        self.shared.exposed.load(Ordering::Relaxed)
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.pg().client
    }

    /// Records that user code has this connection: it may leave anything on the
    /// session, so the server-side return check runs when it goes back.
    pub(crate) fn expose(self) -> Connection {
        self.shared.exposed.store(true, Ordering::Relaxed);
        self
    }

    /// [`expose`](Connection::expose) for a borrowed connection.
    pub(crate) fn exposed(&self) -> &Connection {
        self.shared.exposed.store(true, Ordering::Relaxed);
        self
    }

    /// The server process id of this connection's session (`pg_backend_pid()`).
    pub fn backend_pid(&self) -> i32 {
        self.pg().pid
    }

    /// The registry alias this connection belongs to.
    pub fn alias(&self) -> &str {
        &self.shared.alias.name
    }

    pub(crate) fn pipelined_release(&self) -> bool {
        self.shared.alias.pipelined_release()
    }

    pub(crate) fn heartbeat_board(&self) -> Option<&Arc<crate::heartbeat::Board>> {
        self.shared.alias.heartbeats()
    }

    /// Closes the session instead of returning it to the pool when the last clone
    /// is dropped. The server then releases every lock the session held.
    pub fn discard(&self) {
        self.shared.discard.store(true, Ordering::Relaxed);
    }
}

impl Deref for Connection {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("alias", &self.alias())
            .field("backend_pid", &self.backend_pid())
            .finish()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else { return };
        if *self.discard.get_mut() || obj.client.is_closed() {
            drop(Object::take(obj));
            return;
        }
        if !*self.exposed.get_mut() {
            // Only pglock's own statements ran, and each undo step succeeded
            // (a failed one sets `discard`).
            drop(obj);
            return;
        }
        let alias = self.alias.name.clone();
        // Run by the connection's driver: no task, and no hop to another thread.
        let checks = obj.checks.clone();
        checks.push(Box::pin(async move {
            match return_check(&obj).await {
                Ok(()) => drop(obj),
                Err(why) => {
                    tracing::debug!(target: "pglock", alias = %alias, pid = obj.pid, reason = %why,
                        "closing a connection instead of returning it to the pool");
                    drop(Object::take(obj));
                }
            }
        }));
    }
}

/// Checks on the server that a connection may be reused.
async fn return_check(conn: &PgConn) -> Result<(), String> {
    let check = if conn.is_pooled() {
        sql::RETURN_CHECK_POOLED
    } else {
        sql::RETURN_CHECK
    };
    let rows = conn
        .client
        .simple_query(check)
        .await
        .map_err(|e| format!("check failed: {e}"))?;
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or("check returned no row")?;
    if row.get(0) != Some("t") {
        return Err("a transaction block is open".into());
    }
    if conn.is_pooled() {
        return Ok(());
    }
    if row.get(1) != Some("0") {
        return Err(format!(
            "{} advisory lock(s) still held",
            row.get(1).unwrap_or("?")
        ));
    }
    if row.get(2) != Some(conn.base_lock_timeout.as_str()) {
        return Err(format!(
            "lock_timeout is {:?}, not {:?}",
            row.get(2),
            conn.base_lock_timeout
        ));
    }
    Ok(())
}

/// One level of scope: the connection of one alias, and the scope around it.
struct Frame {
    conn: Connection,
    parent: Option<Arc<Frame>>,
}

tokio::task_local! {
    static SCOPE: Arc<Frame>;
}

thread_local! {
    static SYNC_SCOPE: std::cell::RefCell<Option<Arc<Frame>>> = const { std::cell::RefCell::new(None) };
}

fn find(frame: Option<&Arc<Frame>>, alias: &str) -> Option<Connection> {
    let mut cur = frame;
    while let Some(f) = cur {
        if f.conn.alias() == alias {
            return Some(f.conn.clone());
        }
        cur = f.parent.as_ref();
    }
    None
}

fn top() -> Option<Arc<Frame>> {
    SCOPE
        .try_with(|f| f.clone())
        .ok()
        .or_else(|| SYNC_SCOPE.with(|s| s.borrow().clone()))
}

/// The scope connection of `alias` if the caller is inside a scope of it.
pub(crate) fn current(alias: &str) -> Option<Connection> {
    find(top().as_ref(), alias)
}

/// Runs `fut` with `conn` as the scope connection of its alias.
pub(crate) async fn scoped<F: std::future::Future>(conn: Connection, fut: F) -> F::Output {
    let frame = Arc::new(Frame {
        conn,
        parent: top(),
    });
    SCOPE.scope(frame, fut).await
}

/// Makes `conn` the scope connection of the current thread until the returned
/// guard is dropped (the sync API).
pub(crate) fn enter_sync(conn: Connection) -> SyncFrameGuard {
    let frame = Arc::new(Frame {
        conn,
        parent: top(),
    });
    let prev = SYNC_SCOPE.with(|s| s.replace(Some(frame)));
    SyncFrameGuard { prev: Some(prev) }
}

/// Restores the thread's previous scope on drop.
pub(crate) struct SyncFrameGuard {
    prev: Option<Option<Arc<Frame>>>,
}

impl Drop for SyncFrameGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.prev.take() {
            SYNC_SCOPE.with(|s| *s.borrow_mut() = prev);
        }
    }
}

/// The scope connection of `alias`, or a new checkout and whether it is new.
pub(crate) async fn scope_or_checkout(alias: &str) -> Result<(Connection, bool), Error> {
    match current(alias) {
        Some(c) => Ok((c, false)),
        None => Ok((registry::alias(alias)?.checkout().await?, true)),
    }
}

/// The connection of the `"default"` alias for the current scope: inside an
/// annotated call (or a lock or `lock_timeout` scope) the very connection that holds
/// its lock; elsewhere a fresh checkout from the pool.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// pglock_runtime::advisory("reindex")
///     .run(async {
///         // The same session that holds the advisory lock.
///         let db = pglock_runtime::connection().await?;
///         db.batch_execute("REINDEX TABLE big").await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await??;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// When a fresh checkout fails: the alias is not configured, or no connection could
/// be opened or became free in time.
pub async fn connection() -> Result<Connection, Error> {
    connection_for(DEFAULT_ALIAS).await
}

/// Like [`connection`], for a registered alias.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let analytics = pglock_runtime::connection_for("analytics").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`connection`].
pub async fn connection_for(alias: &str) -> Result<Connection, Error> {
    scope_or_checkout(alias).await.map(|(c, _)| c.expose())
}
