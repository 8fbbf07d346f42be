//! A checked-out connection, and the server-side check it passes before it goes
//! back to its pool.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::Object;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind};
use crate::metrics;
use crate::pool::registry::{self, Alias, Pooled};
use crate::wire::exec::{first_row, Exec};
use crate::wire::session::Session;
use crate::{rt, sql};

/// A pooled connection: the scope connection inside a pglock scope, a fresh
/// checkout outside one. Derefs to [`tokio_postgres::Client`].
///
/// Clones share the same server session. When the last clone is dropped the
/// connection goes back to its pool, but only after pglock has checked, on the
/// server, that it is clean and reset it: no transaction block open or aborted,
/// `lock_timeout` as it was when the connection was opened; then every advisory
/// lock user code left on the session is released and its role, settings,
/// `LISTEN`s, cursors, temporary tables and SQL-level prepared statements are
/// reset. A connection that fails the check is closed instead, so whatever it
/// held is released by the server.
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
    obj: Option<Pooled>,
    /// Set when pglock knows the session is in a state it must not be reused in.
    discard: AtomicBool,
    /// Set once the connection has been handed to user code. Until then pglock
    /// knows every statement it ran and checked each undo step, so the session
    /// goes back to the pool without the server-side return check.
    exposed: AtomicBool,
}

impl Connection {
    /// Checks out a connection of `alias` (never a scope connection: see
    /// `frames::scope_or_checkout` for that).
    pub(crate) async fn checkout(alias: &str) -> Result<Connection, Error> {
        registry::refuse_if_shutting_down(alias)?;
        let alias = registry::alias(alias)?;
        let obj = alias.get().await?;
        let status = alias.status();
        metrics::pool(&alias.name, status.open, status.idle);
        Ok(Connection::new(alias, obj))
    }

    /// Like [`checkout`](Connection::checkout), but only a connection that is
    /// free now: it fails at once rather than queue behind other checkouts.
    pub(crate) async fn checkout_free(alias: &str) -> Result<Connection, Error> {
        registry::refuse_if_shutting_down(alias)?;
        let alias = registry::alias(alias)?;
        let obj = alias.get_free().await?;
        let status = alias.status();
        metrics::pool(&alias.name, status.open, status.idle);
        Ok(Connection::new(alias, obj))
    }

    fn new(alias: Arc<Alias>, obj: Pooled) -> Connection {
        Connection {
            shared: Arc::new(Shared {
                alias,
                obj: Some(obj),
                discard: AtomicBool::new(false),
                exposed: AtomicBool::new(false),
            }),
        }
    }

    /// pglock's record of the session.
    pub(crate) fn session(&self) -> &Session {
        self.shared_session()
    }

    /// The session, shareable beyond this checkout (it may be back in the pool,
    /// serving someone else, while a clone of it waits for a reply).
    pub(crate) fn shared_session(&self) -> &Arc<Session> {
        self.shared.obj.as_deref().expect("present until drop")
    }

    /// Runs pglock's statements on this checkout (prepared once per session).
    pub(crate) fn exec(&self) -> Exec<'_> {
        Exec::on(self.session())
    }

    /// Records that user code has this connection: it may leave anything on the
    /// session, so the server-side return check runs when it goes back. Returns
    /// the connection, to hand it out.
    pub(crate) fn expose(&self) -> &Connection {
        self.shared.exposed.store(true, Ordering::Relaxed);
        self
    }

    /// Whether user code has had this connection ([`expose`](Connection::expose)).
    pub(crate) fn is_exposed(&self) -> bool {
        self.shared.exposed.load(Ordering::Relaxed)
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.session().client
    }

    /// The server process id of this connection's session (`pg_backend_pid()`).
    pub fn backend_pid(&self) -> i32 {
        self.session().pid
    }

    /// The registry alias this connection belongs to.
    pub fn alias(&self) -> &str {
        &self.shared.alias.name
    }

    /// The alias's name, shareable.
    pub(crate) fn alias_name(&self) -> Arc<str> {
        self.shared.alias.name.clone()
    }

    /// Its alias's configuration.
    pub(crate) fn config(&self) -> &crate::pool::config::Config {
        self.shared.alias.config()
    }

    /// Whether its alias releases session locks pipelined
    /// ([`Config::pipelined_release`](crate::pool::config::Config::pipelined_release)).
    pub(crate) fn pipelined_release(&self) -> bool {
        self.shared.alias.pipelined_release()
    }

    /// How often a lock held on it is checked
    /// ([`Config::heartbeat`](crate::pool::config::Config::heartbeat)).
    pub(crate) fn heartbeat_interval(&self) -> Option<Duration> {
        self.shared.alias.heartbeat()
    }

    /// How long pglock waits for the server to answer one of its own short
    /// statements on this session (a heartbeat check, a release, the return
    /// check) before it counts the session as gone
    /// ([`Config::answer_deadline`](crate::pool::config::Config::answer_deadline)).
    pub(crate) fn answer_deadline(&self) -> Duration {
        self.config().answer_deadline()
    }

    /// Runs `fut`, one of pglock's short statements on this session, within
    /// [`answer_deadline`](Connection::answer_deadline). When the server has not
    /// answered by then (a silent network partition, a frozen server), the
    /// session is closed at once, which ends whatever it held on the server as
    /// soon as the server notices, and the error says so.
    pub(crate) async fn within_deadline<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let deadline = self.answer_deadline();
        match rt::timeout(deadline, fut).await {
            Ok(r) => r,
            Err(_) => {
                self.discard();
                self.session().close();
                Err(Error::new(
                    ErrorKind::ConnectionLost,
                    format!(
                        "the server did not answer {what} within {}: the connection is \
                         closed (a network partition or a frozen server), and the server \
                         ends the session, with every lock it held, when it notices",
                        humantime::format_duration(deadline)
                    ),
                )
                .with_alias(self.alias()))
            }
        }
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
        // Dropped while its thread unwinds: a panic cut pglock's own code short
        // (between a grant and the guard or scope that would undo it, say), so
        // what pglock believes about the session is not to be trusted: closed,
        // which releases whatever it holds.
        if *self.discard.get_mut() || obj.client.is_closed() || std::thread::panicking() {
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
        let deadline = self.alias.config().answer_deadline();
        // Run by the connection's driver: no task, and no hop to another thread.
        let checks = obj.checks.clone();
        checks.push(Box::pin(async move {
            let checked = tokio::time::timeout(deadline, return_check(&obj))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "the server did not answer the check within {}",
                        humantime::format_duration(deadline)
                    ))
                });
            match checked {
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

/// Checks on the server that a connection may be reused, and resets it
/// ([`sql::RETURN_CHECK`]): one simple-query round trip whose cost does not
/// depend on how many locks the server holds. Advisory locks the body left on
/// the session are released, not counted: the session is then as clean as a
/// closed one would leave the server, and stays open.
async fn return_check(conn: &Session) -> Result<(), String> {
    let check = if conn.behind_pooler() {
        sql::RETURN_CHECK_BEHIND_POOLER
    } else {
        sql::RETURN_CHECK
    };
    let rows = conn
        .client
        .simple_query(check)
        .await
        .map_err(|e| format!("check failed: {e}"))?;
    let row = first_row(&rows).ok_or("check returned no row")?;
    if row.get(0) != Some("t") {
        return Err("a transaction block is open".into());
    }
    if conn.behind_pooler() {
        return Ok(());
    }
    if row.get(1) != Some(conn.base_lock_timeout.as_str()) {
        return Err(format!(
            "lock_timeout is {:?}, not {:?}",
            row.get(1),
            conn.base_lock_timeout
        ));
    }
    // After the reset: the user it connected as.
    let last = rows.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    if last.and_then(|r| r.get(0)) != Some("t") {
        return Err("the session does not run as the user it connected as".into());
    }
    // SQL-level prepared statements, by the names the server quoted.
    if let Some(deallocate) = row.get(3) {
        conn.client
            .batch_execute(deallocate)
            .await
            .map_err(|e| format!("deallocating prepared statements failed: {e}"))?;
    }
    Ok(())
}
