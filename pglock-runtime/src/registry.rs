//! Database aliases, their configuration and their connection pools.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use tokio_postgres::{Client, NoTls, Statement};

use crate::connection::Connection;
use crate::error::{Error, ErrorKind};
use crate::{rt, sql};

/// The alias used when none is named.
///
/// ```
/// assert_eq!(pglock_runtime::DEFAULT_ALIAS, "default");
/// ```
pub const DEFAULT_ALIAS: &str = "default";

/// How to reach one database, and how many connections to keep for it.
///
/// ```
/// use std::time::Duration;
/// use pglock_runtime::Config;
///
/// let config: Config = "postgres://app@db.internal/app".parse()?;
/// let config = config.max_size(32).checkout_timeout(Duration::from_secs(5));
/// # Ok::<(), pglock_runtime::Error>(())
/// ```
#[derive(Clone)]
pub struct Config {
    pg: tokio_postgres::Config,
    max_size: usize,
    checkout_timeout: Duration,
    connect_timeout: Duration,
    allow_standby: bool,
    heartbeat: Option<Duration>,
    transaction_pooling: bool,
    pipelined_release: bool,
    drive_on_caller_runtime: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("Config")
            .field("pg", &self.pg)
            .field("max_size", &self.max_size)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("allow_standby", &self.allow_standby)
            .field("heartbeat", &self.heartbeat)
            .field("transaction_pooling", &self.transaction_pooling)
            .field("pipelined_release", &self.pipelined_release)
            .field("drive_on_caller_runtime", &self.drive_on_caller_runtime)
            .finish()
    }
}

impl Config {
    /// A configuration from a `tokio_postgres` one, with the default pool settings:
    /// 16 connections, a 30 s checkout wait, a 10 s connect timeout, standbys refused.
    pub fn new(pg: tokio_postgres::Config) -> Config {
        let mut pg = pg;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        let connect_timeout = *pg.get_connect_timeout().expect("set above");
        Config {
            pg,
            max_size: 16,
            checkout_timeout: Duration::from_secs(30),
            connect_timeout,
            allow_standby: false,
            heartbeat: Some(Duration::from_secs(1)),
            transaction_pooling: false,
            pipelined_release: true,
            drive_on_caller_runtime: true,
        }
    }

    /// Parses a libpq URL (`postgres://user:pass@host:port/db?…`) or a key=value
    /// connection string (`host=… user=… dbname=…`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Configuration`] saying what is malformed.
    pub fn from_url(url: &str) -> Result<Config, Error> {
        tokio_postgres::Config::from_str(url)
            .map(Config::new)
            .map_err(|e| {
                Error::config(format!(
                    "invalid database URL: {e}; expected `postgres://user:password@host:port/database` \
                     or `host=… user=… dbname=…`"
                ))
                .with_source(e)
            })
    }

    /// The largest number of connections the alias opens (at least 1).
    pub fn max_size(mut self, n: usize) -> Config {
        self.max_size = n.max(1);
        self
    }

    /// How long a checkout waits for a free connection before failing with
    /// [`ErrorKind::Pool`].
    pub fn checkout_timeout(mut self, d: Duration) -> Config {
        self.checkout_timeout = d;
        self
    }

    /// How long opening a connection may take.
    pub fn connect_timeout(mut self, d: Duration) -> Config {
        self.connect_timeout = d;
        self.pg.connect_timeout(d);
        self
    }

    /// Allows locking on a hot standby. Locks taken there exclude nobody on the
    /// primary; only use this for a standalone server that happens to be in
    /// recovery, or for read-only introspection.
    pub fn allow_standby(mut self, allow: bool) -> Config {
        self.allow_standby = allow;
        self
    }

    /// How often a held lock is checked on its own session (one cheap query per
    /// interval, only while a lock is held), bounding how long a lost lock goes
    /// unnoticed: [`AdvisoryGuard::lost`](crate::AdvisoryGuard::lost) and
    /// `on_lost = cancel` rely on it. Default 1 s; `None` turns it off.
    pub fn heartbeat(mut self, every: Option<Duration>) -> Config {
        self.heartbeat = every.map(|d| d.max(Duration::from_millis(10)));
        self
    }

    /// Declares that the alias connects through a transaction-pooling proxy
    /// (PgBouncer `pool_mode = transaction`). pglock then uses unnamed statements
    /// only, refuses session-level locks and session `lock_timeout` scopes with
    /// [`ErrorKind::Pooler`] (they would not stay with the connection), and keeps
    /// transaction-level (`xact`) locks and table locks working. Without it, pglock
    /// detects the proxy when a session lock or one of its prepared statements lands
    /// on another server session, and fails the same way.
    pub fn transaction_pooling(mut self, pooled: bool) -> Config {
        self.transaction_pooling = pooled;
        self
    }

    /// Releases the session lock of an annotated call (or [`AdvisoryLock::run`])
    /// without waiting for the server's reply: the call returns after one round
    /// trip (the lock) instead of two, and the connection goes back to the pool at
    /// once; whoever uses it next is queued behind the unlock on the wire. The
    /// reply is still checked, and a `timeout = 0` / `no_wait` acquisition of the
    /// same key in this process waits for it (up to 2 s), so it never finds the
    /// key busy because of a release that already returned. **On by default.**
    ///
    /// It applies only when the body never had the connection (it did not call
    /// [`connection`](crate::connection()) or use the scope connection), nothing
    /// else is to be undone (no `lock_timeout`, not `xact`), the connection is
    /// live and not behind a transaction pooler. Then the unlock cannot find the
    /// lock gone unless the session itself ends, and a session that ended before
    /// the release is still reported: the call returns `Err`. What is given up: if
    /// the session ends *while the unlock is on the wire*, or a stray
    /// `pg_cancel_backend` cancels the unlock, the call has already returned `Ok`;
    /// the failure is an error event (`target: "pglock"`) and the session is
    /// closed at once, which releases whatever it holds. With `false`, every
    /// release waits for its reply and a lost lock is the call's
    /// `Err(LostBeforeRelease)` or connection error. Guards' explicit `release()`
    /// always waits.
    ///
    /// ```
    /// # fn f() -> Result<(), pglock_runtime::Error> {
    /// let strict = pglock_runtime::Config::from_url("postgres://localhost/app")?
    ///     .pipelined_release(false);
    /// # Ok(()) }
    /// ```
    ///
    /// [`AdvisoryLock::run`]: crate::AdvisoryLock::run
    pub fn pipelined_release(mut self, pipelined: bool) -> Config {
        self.pipelined_release = pipelined;
        self
    }

    /// Drives connections checked out from a multi-thread tokio runtime on that
    /// runtime, like a plain `tokio_postgres` client whose connection task the
    /// application spawned. On by default.
    ///
    /// A statement's reply then wakes the waiting task on its own runtime instead
    /// of crossing from pglock's I/O threads: on a loaded two-core machine this
    /// is the difference between ~0.6× and ~1.0× the lock throughput of raw
    /// clients (see `BENCHMARKS.md`). Each multi-thread runtime that uses the
    /// alias gets a pool of its own, of up to [`max_size`](Config::max_size)
    /// connections. Checkouts from current-thread runtimes, from outside any
    /// runtime and from the blocking API use connections driven by pglock's own
    /// runtime, as do all checkouts when this is off.
    ///
    /// A connection closes when the runtime driving it shuts down, releasing
    /// whatever its session holds. That only matters to a guard or connection
    /// kept past the end of the runtime it was checked out on (an application
    /// that builds short-lived runtimes and hands guards across them); turn
    /// this off for such an alias.
    ///
    /// ```
    /// # let config: pglock_runtime::Config = "postgres://localhost/app".parse()?;
    /// let config = config.drive_on_caller_runtime(false);
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    pub fn drive_on_caller_runtime(mut self, on: bool) -> Config {
        self.drive_on_caller_runtime = on;
        self
    }

    /// The underlying `tokio_postgres` configuration.
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg
    }
}

impl FromStr for Config {
    type Err = Error;

    fn from_str(s: &str) -> Result<Config, Error> {
        Config::from_url(s)
    }
}

/// Registers a database alias for use with `using = "alias"`.
///
/// The `"default"` alias needs no registration: on first use it reads
/// `DATABASE_URL`. Registering it explicitly is allowed, once, before its first use.
///
/// ```no_run
/// use pglock_runtime::{register, Config};
///
/// register("analytics", Config::from_url("postgres://localhost/analytics")?)?;
/// # Ok::<(), pglock_runtime::Error>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Configuration`] when the alias is already registered (or, for
/// `"default"`, already configured from `DATABASE_URL` by an earlier use).
pub fn register(alias: &str, config: Config) -> Result<(), Error> {
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    if map.contains_key(alias) {
        return Err(Error::config(format!(
            "database alias `{alias}` is already registered; register each alias once, \
             before its first use"
        ))
        .with_alias(alias));
    }
    map.insert(alias.to_owned(), Alias::new(alias, config));
    Ok(())
}

/// Whether an alias is registered (for `"default"`: configured, explicitly or from
/// `DATABASE_URL` by an earlier use).
///
/// ```
/// assert!(!pglock_runtime::is_registered("never-registered"));
/// ```
pub fn is_registered(alias: &str) -> bool {
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(alias)
}

fn registry() -> &'static RwLock<HashMap<String, Arc<Alias>>> {
    static REGISTRY: OnceLock<RwLock<HashMap<String, Arc<Alias>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Finds an alias, configuring `"default"` from `DATABASE_URL` on first use.
pub(crate) fn alias(name: &str) -> Result<Arc<Alias>, Error> {
    if let Some(a) = registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
    {
        return Ok(a.clone());
    }
    if name != DEFAULT_ALIAS {
        return Err(Error::config(format!(
            "database alias `{name}` is not configured: call \
             `pglock_runtime::register(\"{name}\", config)` before using it"
        ))
        .with_alias(name));
    }
    let url = std::env::var("DATABASE_URL").map_err(|_| {
        Error::config(
            "database alias `default` is not configured: set the `DATABASE_URL` environment \
             variable or call `pglock_runtime::register(\"default\", config)`",
        )
        .with_alias(name)
    })?;
    let config = Config::from_url(&url).map_err(|e| {
        Error::config(format!("`DATABASE_URL` is not a valid database URL: {e}")).with_alias(name)
    })?;
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    Ok(map
        .entry(name.to_owned())
        .or_insert_with(|| Alias::new(name, config))
        .clone())
}

/// One registered database: its name, configuration and pool.
pub(crate) struct Alias {
    pub(crate) name: Arc<str>,
    config: Config,
    /// Connections driven on pglock's own runtime.
    pool: Pool,
    /// Connections driven on callers' multi-thread runtimes, one pool per runtime
    /// (see [`Config::drive_on_caller_runtime`]).
    local: Mutex<HashMap<tokio::runtime::Id, Pool>>,
    /// The locks held on this alias's connections, for the heartbeat.
    heartbeats: Option<Arc<crate::heartbeat::Board>>,
}

type Pool = managed::Pool<Manager>;

impl Alias {
    fn new(name: &str, config: Config) -> Arc<Alias> {
        Arc::new(Alias {
            name: Arc::from(name),
            pool: Alias::build_pool(name, &config, false),
            heartbeats: config.heartbeat.map(crate::heartbeat::Board::new),
            config,
            local: Mutex::new(HashMap::new()),
        })
    }

    fn build_pool(name: &str, config: &Config, on_caller: bool) -> Pool {
        let manager = Manager {
            alias: Arc::from(name),
            config: config.clone(),
            on_caller,
        };
        managed::Pool::builder(manager)
            .max_size(config.max_size)
            .wait_timeout(Some(config.checkout_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            // The most recently returned connection first: the one whose
            // pipelined release (if any) the next statements queue behind, and
            // the warmest; idle ones beyond the working set stay idle.
            .queue_mode(deadpool::managed::QueueMode::Lifo)
            .build()
            .expect("a runtime and a max size are set")
    }

    /// The pool of the caller's multi-thread runtime, when connections may be
    /// driven there.
    fn caller_pool(&self) -> Option<Pool> {
        if !self.config.drive_on_caller_runtime || !rt::caller_runtime_usable() {
            return None;
        }
        let handle = tokio::runtime::Handle::current();
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return None;
        }
        let id = handle.id();
        let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = map.get(&id) {
            return Some(pool.clone());
        }
        // A new runtime: forget the pools of runtimes that have shut down (their
        // connections closed with them), so that ids reused later start afresh.
        map.retain(|_, pool| {
            pool.retain(|c, _| !c.client.is_closed());
            pool.status().size > 0
        });
        let pool = Alias::build_pool(&self.name, &self.config, true);
        map.insert(id, pool.clone());
        Some(pool)
    }

    /// Checks out a connection: on a multi-thread runtime (unless configured
    /// otherwise) one driven by that runtime, else one driven by pglock's.
    pub(crate) async fn checkout(self: &Arc<Self>) -> Result<Connection, Error> {
        // The pool's timers need a tokio runtime: the caller's when it can run
        // them, otherwise pglock's own.
        let obj = if let Some(pool) = self.caller_pool() {
            pool.get().await
        } else if rt::caller_runtime_usable() {
            self.pool.get().await
        } else {
            let this = self.clone();
            rt::spawn(async move { this.pool.get().await })
                .await
                .map_err(|e| Error::new(ErrorKind::Pool, format!("checkout task failed: {e}")))?
        };
        match obj {
            Ok(obj) => Ok(Connection::new(self.clone(), obj)),
            Err(e) => Err(self.pool_error(e)),
        }
    }

    fn pool_error(&self, e: managed::PoolError<Error>) -> Error {
        let name = &*self.name;
        match e {
            managed::PoolError::Backend(e) => e.with_alias(name),
            managed::PoolError::Timeout(managed::TimeoutType::Wait) => Error::new(
                ErrorKind::Pool,
                format!(
                    "no connection of alias `{name}` became free within {}: all {} are in use; \
                     raise `Config::max_size` or `Config::checkout_timeout`",
                    humantime::format_duration(self.config.checkout_timeout),
                    self.config.max_size
                ),
            )
            .with_alias(name),
            managed::PoolError::Timeout(_) => Error::new(
                ErrorKind::Pool,
                format!(
                    "could not connect to the server of alias `{name}` within {}",
                    humantime::format_duration(self.config.connect_timeout)
                ),
            )
            .with_alias(name),
            other => Error::new(ErrorKind::Pool, other.to_string()).with_alias(name),
        }
    }

    pub(crate) fn heartbeats(&self) -> Option<&Arc<crate::heartbeat::Board>> {
        self.heartbeats.as_ref()
    }

    pub(crate) fn pipelined_release(&self) -> bool {
        self.config.pipelined_release
    }

    /// Pool status: (open connections, idle connections).
    pub(crate) fn status(&self) -> (usize, usize) {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        std::iter::once(&self.pool)
            .chain(local.values())
            .map(Pool::status)
            .fold((0, 0), |(size, idle), s| {
                (size + s.size, idle + s.available)
            })
    }
}

/// A pooled connection and what pglock knows about it.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    /// The backend's process id.
    pub(crate) pid: i32,
    /// `lock_timeout` as it was when the connection was opened; a connection goes
    /// back to the pool only with this value.
    pub(crate) base_lock_timeout: String,
    statements: Mutex<HashMap<&'static str, Statement>>,
    /// Behind a transaction pooler (declared, or detected): no prepared
    /// statements, no session-level state.
    pooled: std::sync::atomic::AtomicBool,
    /// Checks the driver polls (pipelined releases, return checks).
    pub(crate) checks: Arc<crate::driver::Checks>,
    _driver: tokio::task::JoinHandle<()>,
}

/// Backend pids of every connection this process has open through pglock (the
/// prioritize watchdog never signals them).
pub(crate) fn own_pids() -> std::collections::HashSet<i32> {
    OWN_PIDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

static OWN_PIDS: Mutex<Option<std::collections::HashSet<i32>>> = Mutex::new(None);

impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(set) = OWN_PIDS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            set.remove(&self.pid);
        }
        // Closes the socket now rather than when the driver notices.
        self._driver.abort();
    }
}

impl PgConn {
    /// Whether this connection goes through a transaction pooler.
    pub(crate) fn is_pooled(&self) -> bool {
        self.pooled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records that this connection turned out to go through a transaction pooler.
    pub(crate) fn mark_pooled(&self) {
        tracing::warn!(target: "pglock", pid = self.pid,
            "this connection goes through a transaction-pooling proxy: its server session changes between statements");
        self.pooled
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
        self._driver.abort();
    }

    pub(crate) fn cached(&self, sql: &'static str) -> Option<Statement> {
        self.statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned()
    }
}

pub(crate) struct Manager {
    alias: Arc<str>,
    config: Config,
    /// Connect and drive on the runtime that asks for the connection (a caller's
    /// multi-thread runtime), not on pglock's.
    on_caller: bool,
}

impl managed::Manager for Manager {
    /// Shared so that a pipelined release can wait for its reply while the
    /// connection is already back in the pool (see `scope.rs`).
    type Type = Arc<PgConn>;
    type Error = Error;

    async fn create(&self) -> Result<Arc<PgConn>, Error> {
        let pg = self.config.pg.clone();
        let allow_standby = self.config.allow_standby;
        let pooled = self.config.transaction_pooling;
        let alias = self.alias.clone();
        let conn = if self.on_caller {
            connect(pg, &alias, allow_standby, pooled).await
        } else {
            rt::spawn(async move { connect(pg, &alias, allow_standby, pooled).await })
                .await
                .map_err(|e| Error::new(ErrorKind::Pool, format!("connect task failed: {e}")))?
        };
        conn.map(Arc::new)
    }

    async fn recycle(&self, conn: &mut Arc<PgConn>, _: &Metrics) -> RecycleResult<Error> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}

/// Opens a connection, spawns its driver on the current runtime, and reads
/// the facts pglock needs. Refuses a hot standby unless allowed.
async fn connect(
    pg: tokio_postgres::Config,
    alias: &str,
    allow_standby: bool,
    pooled: bool,
) -> Result<PgConn, Error> {
    let (client, connection) = pg
        .connect(NoTls)
        .await
        .map_err(|e| connect_error(e, alias))?;
    let checks = Arc::new(crate::driver::Checks::default());
    let driver = tokio::spawn(crate::driver::drive(
        connection,
        checks.clone(),
        alias.to_owned(),
    ));
    // Simple protocol: no prepared statement (a transaction pooler would run its
    // Parse and its Execute on different server sessions).
    let rows = client
        .simple_query(sql::CONNECTION_INFO)
        .await
        .map_err(|e| Error::from_pg(e).with_alias(alias))?;
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| Error::new(ErrorKind::Database, "no connection info returned"))?;
    let pid: i32 = row.get(0).and_then(|p| p.parse().ok()).unwrap_or(0);
    let in_recovery = row.get(1) == Some("t");
    let base_lock_timeout = row.get(2).unwrap_or("0").to_owned();
    if in_recovery && !allow_standby {
        return Err(Error::new(
            ErrorKind::Standby,
            format!(
                "the server of alias `{alias}` is a hot standby (pg_is_in_recovery() is true): an \
                 advisory lock taken on a replica excludes nobody on the primary; point the alias \
                 at the primary, or call `Config::allow_standby(true)` if you really mean it"
            ),
        )
        .with_alias(alias));
    }
    OWN_PIDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(pid);
    Ok(PgConn {
        client,
        pid,
        base_lock_timeout,
        statements: Mutex::new(HashMap::new()),
        pooled: std::sync::atomic::AtomicBool::new(pooled),
        checks,
        _driver: driver,
    })
}

fn connect_error(e: tokio_postgres::Error, alias: &str) -> Error {
    let base = Error::from_pg(e);
    let kind = match base.kind() {
        // Authentication and unknown-database errors are configuration problems.
        ErrorKind::Database => ErrorKind::Configuration,
        // Failing to connect at all is a pool-level failure, not a lost lock.
        ErrorKind::ConnectionLost => ErrorKind::Pool,
        k => k,
    };
    base.reclassify(
        kind,
        &format!("cannot connect to the server of alias `{alias}`"),
    )
    .with_alias(alias)
}
