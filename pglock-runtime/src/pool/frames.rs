//! The scope connection: one connection per alias for the duration of an
//! annotated call (or lock, or `lock_timeout` scope), reachable from its body
//! through a stack of frames (task-local for async code, thread-local for sync).

use std::sync::Arc;

use crate::error::Error;
use crate::pool::connection::Connection;
use crate::pool::registry::DEFAULT_ALIAS;

/// One level of scope: the connection of one alias, and the scope around it.
struct Frame {
    conn: Connection,
    /// The fencing token of the lock this scope holds, if it is `fenced`.
    fencing_token: Option<u64>,
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

/// The first `Some` that `f` returns for the caller's scope connections,
/// innermost first.
pub(crate) fn find_map<T>(mut f: impl FnMut(&Connection) -> Option<T>) -> Option<T> {
    let top = top();
    let mut cur = top.as_ref();
    while let Some(frame) = cur {
        if let Some(t) = f(&frame.conn) {
            return Some(t);
        }
        cur = frame.parent.as_ref();
    }
    None
}

/// Runs `fut` with `conn` as the scope connection of its alias (and
/// `fencing_token` as the token of the lock it holds, if fenced).
pub(crate) async fn scoped<F: std::future::Future>(
    conn: Connection,
    fencing_token: Option<u64>,
    fut: F,
) -> F::Output {
    let frame = Arc::new(Frame {
        conn,
        fencing_token,
        parent: top(),
    });
    SCOPE.scope(frame, fut).await
}

/// Makes `conn` the scope connection of the current thread until the returned
/// guard is dropped (the sync API).
pub(crate) fn enter_sync(conn: Connection, fencing_token: Option<u64>) -> SyncFrameGuard {
    let frame = Arc::new(Frame {
        conn,
        fencing_token,
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

/// The fencing token of the innermost enclosing `fenced` lock scope: inside an
/// annotated function with `#[advisory_lock(fenced)]`, or the future of
/// [`AdvisoryLock::run`](crate::AdvisoryLock::run) on a
/// [`fenced`](crate::AdvisoryLock::fenced) lock. `None` elsewhere.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// pglock_runtime::advisory("exports::daily")
///     .fenced()
///     .run(async {
///         let token = pglock_runtime::fencing_token().expect("inside a fenced scope");
///         // send `token` along with every write made outside the lock's session
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub fn fencing_token() -> Option<u64> {
    let top = top();
    let mut cur = top.as_ref();
    while let Some(frame) = cur {
        if frame.fencing_token.is_some() {
            return frame.fencing_token;
        }
        cur = frame.parent.as_ref();
    }
    None
}

/// The scope connection of `alias`, or a new checkout and whether it is new.
pub(crate) async fn scope_or_checkout(alias: &str) -> Result<(Connection, bool), Error> {
    match current(alias) {
        Some(c) => Ok((c, false)),
        None => Ok((Connection::checkout(alias).await?, true)),
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
    let (conn, _) = scope_or_checkout(alias).await?;
    conn.expose();
    Ok(conn)
}
