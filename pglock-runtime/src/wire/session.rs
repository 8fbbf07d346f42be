//! pglock's record of one server session: its client, backend pid, the
//! `lock_timeout` it was opened with, its prepared statements, what it goes
//! through (the server itself or a pooler: its `wire/pooler.rs` route), the
//! checks its driver polls, and the lock wait last seen on it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Statement};

use crate::error::Error;
use crate::rows::LockWait;
use crate::wire::driver::Checks;
use crate::wire::pooler::{Route, RouteCell};
use crate::wire::tls::Connector;

/// An open connection and what pglock knows about its server session.
pub(crate) struct Session {
    /// Its number among the sessions this process opened.
    serial: u64,
    pub(crate) client: Client,
    /// The backend's process id.
    pub(crate) pid: i32,
    /// `lock_timeout` as it was when the connection was opened; a connection goes
    /// back to the pool only with this value.
    pub(crate) base_lock_timeout: String,
    statements: Mutex<HashMap<&'static str, Statement>>,
    /// What it goes through (`wire/pooler.rs`): the server itself, or a
    /// pooler, declared or detected; behind a pooler no prepared statements,
    /// and no session-level state unless it is declared to pool by session.
    route: RouteCell,
    /// The server's idle timers are set on it (`sql::SET_SERVER_TIMERS`).
    server_timers: AtomicBool,
    /// Checks the driver polls (pipelined releases, return checks).
    pub(crate) checks: Arc<Checks>,
    driver: tokio::task::JoinHandle<()>,
    /// The alias's TLS settings, for cancel requests.
    tls: Connector,
    /// The lock wait a look-up of `lock/waits.rs` last saw on this session
    /// (while a `lock_timeout` scope's body ran on it), for the error of the
    /// statement that then hits the limit.
    seen_wait: Mutex<Option<SeenWait>>,
}

/// A lock wait seen on a session, when, and for how long it may still be the
/// wait that an error reports.
#[derive(Debug)]
pub(crate) struct SeenWait {
    pub(crate) wait: LockWait,
    pub(crate) at: Instant,
    pub(crate) valid_for: Duration,
}

/// Backend pids of every connection this process has open through pglock (the
/// prioritize watchdog never signals them).
pub(crate) fn own_pids() -> HashSet<i32> {
    open_sessions().values().map(|o| o.pid).collect()
}

/// Closes every session this process has open through pglock, whoever uses
/// it: the server ends each, releasing every lock it held. Returns how many
/// were open.
pub(crate) fn close_all() -> usize {
    let open = open_sessions();
    for o in open.values() {
        o.driver.abort();
    }
    open.len()
}

/// Whether every session [`close_all`] closed has its socket closed (its
/// driver task gone).
pub(crate) fn all_closed() -> bool {
    open_sessions().values().all(|o| o.checks.is_closed())
}

/// A session open now, as [`close_all`] sees it.
#[derive(Clone)]
struct Open {
    pid: i32,
    driver: tokio::task::AbortHandle,
    checks: Arc<Checks>,
}

/// The sessions open now, by serial number (pids of different servers can be
/// equal).
fn open_sessions() -> HashMap<u64, Open> {
    OPEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

static OPEN: Mutex<Option<HashMap<u64, Open>>> = Mutex::new(None);
static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Session {
    /// Records a session just opened (its pid joins [`own_pids`], and
    /// [`close_all`] can close it, until it is dropped). `driver` is the task driving its socket, aborted on drop.
    pub(crate) fn new(
        client: Client,
        pid: i32,
        base_lock_timeout: String,
        route: Route,
        checks: Arc<Checks>,
        driver: tokio::task::JoinHandle<()>,
        tls: Connector,
    ) -> Session {
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        OPEN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Default::default)
            .insert(
                serial,
                Open {
                    pid,
                    driver: driver.abort_handle(),
                    checks: checks.clone(),
                },
            );
        Session {
            serial,
            client,
            pid,
            base_lock_timeout,
            statements: Mutex::new(HashMap::new()),
            route: RouteCell::new(route),
            server_timers: AtomicBool::new(false),
            checks,
            driver,
            tls,
            seen_wait: Mutex::new(None),
        }
    }

    /// Records what a look-up saw this session wait for (`None`: not waiting).
    pub(crate) fn record_wait(&self, seen: Option<SeenWait>) {
        *self.seen_wait.lock().unwrap_or_else(|e| e.into_inner()) = seen;
    }

    /// Takes the lock wait last seen on this session, if it was seen recently
    /// enough to be the one a statement just gave up.
    pub(crate) fn take_recent_wait(&self) -> Option<LockWait> {
        let seen = self
            .seen_wait
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        (seen.at.elapsed() <= seen.valid_for).then_some(seen.wait)
    }

    /// Asks the server, in the background and over the alias's TLS settings,
    /// to cancel whatever this session is running.
    pub(crate) fn cancel_running(&self) {
        self.canceller().cancel();
    }

    /// What cancels this session's running statement later.
    pub(crate) fn canceller(&self) -> Canceller {
        Canceller {
            token: self.client.cancel_token(),
            tls: self.tls.clone(),
        }
    }

    /// Whether the server's idle timers are set on this session.
    pub(crate) fn has_server_timers(&self) -> bool {
        self.server_timers.load(Ordering::Relaxed)
    }

    /// Records whether the server's idle timers are set on this session.
    pub(crate) fn set_server_timers(&self, on: bool) {
        self.server_timers.store(on, Ordering::Relaxed);
    }

    /// Whether session-level state may not stay with this connection: it goes
    /// through a transaction pooler, or a pooler whose mode is not declared.
    pub(crate) fn behind_pooler(&self) -> bool {
        !self.route.get().keeps_session_state()
    }

    /// Whether pglock prepares named statements on this session (not behind
    /// any pooler).
    pub(crate) fn prepares(&self) -> bool {
        self.route.get().prepares()
    }

    /// What a session-level lock or setting is refused with here (see
    /// [`behind_pooler`](Session::behind_pooler)).
    pub(crate) fn pooler_refusal(&self) -> Error {
        match self.route.get() {
            Route::UnknownPooler => Error::pooler_undeclared(),
            _ => Error::pooler(),
        }
    }

    /// Records that this connection turned out to go through a transaction pooler.
    pub(crate) fn mark_behind_pooler(&self) {
        tracing::warn!(target: "pglock", pid = self.pid,
            "this connection goes through a transaction-pooling proxy: its server session changes between statements");
        self.route.set(Route::TransactionPooler);
        self.statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// A prepared statement for `sql`, prepared once per connection.
    pub(crate) async fn statement(&self, sql: &'static str) -> Result<Statement, Error> {
        if let Some(s) = self.cached(sql) {
            return Ok(s);
        }
        let stmt = self.client.prepare(sql).await.map_err(Error::from_pg)?;
        self.statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql, stmt.clone());
        Ok(stmt)
    }

    /// Closes the socket now: the server ends the session and releases every lock
    /// it held, whoever is using the connection.
    pub(crate) fn close(&self) {
        self.driver.abort();
    }

    /// The statement prepared for `sql` on this session, if it is.
    pub(crate) fn cached(&self, sql: &'static str) -> Option<Statement> {
        self.statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(open) = OPEN.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            open.remove(&self.serial);
        }
        // Closes the socket now rather than when the driver notices.
        self.driver.abort();
    }
}

/// A cancel request for one session's running statement, ready to send.
#[derive(Clone)]
pub(crate) struct Canceller {
    token: tokio_postgres::CancelToken,
    tls: Connector,
}

impl Canceller {
    /// For a caller's own client, whose TLS settings pglock does not know (a
    /// cancel request carries only the session's cancel key, so the server's
    /// certificate is not checked).
    pub(crate) fn of_client(client: &Client) -> Canceller {
        Canceller {
            token: client.cancel_token(),
            tls: Connector::lenient(),
        }
    }

    /// Sends it, in the background.
    pub(crate) fn cancel(self) {
        self.tls.cancel(self.token);
    }
}
