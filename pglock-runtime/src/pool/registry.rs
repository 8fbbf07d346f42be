//! Database aliases and their connection pools: the registry, the deadpool
//! manager that opens pglock's sessions, and pool statistics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use deadpool::managed::{self, Metrics, Object, RecycleError, RecycleResult};

use crate::error::{Error, ErrorKind};
use crate::pool::config::Config;
use crate::wire::driver::{self, Checks};
use crate::wire::exec::first_row;
use crate::wire::pooler::{self, Pooling, Route};
use crate::wire::session::Session;
use crate::wire::tls::{self, Connector};
use crate::{rt, sql};

/// The alias used when none is named.
///
/// ```
/// assert_eq!(pglock_runtime::DEFAULT_ALIAS, "default");
/// ```
pub const DEFAULT_ALIAS: &str = "default";

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
/// `"default"`, already configured from `DATABASE_URL` by an earlier use), or the
/// configuration is invalid ([`Config::schema`]), or its TLS settings cannot
/// be honoured (a certificate file that cannot be read, see
/// [`Config::ssl_mode`]).
pub fn register(alias: &str, config: Config) -> Result<(), Error> {
    let new = Alias::new(alias, config)?;
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    if map.contains_key(alias) {
        return Err(Error::config(format!(
            "database alias `{alias}` is already registered; register each alias once, \
             before its first use"
        ))
        .with_alias(alias));
    }
    map.insert(alias.to_owned(), new);
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

/// The `"default"` alias's configuration from `DATABASE_URL`'s value.
fn default_config(url: Result<String, std::env::VarError>) -> Result<Config, Error> {
    match url {
        Err(_) => Err(Error::config(
            "database alias `default` is not configured: set the `DATABASE_URL` environment \
             variable or call `pglock_runtime::register(\"default\", config)`",
        )),
        Ok(url) if url.trim().is_empty() => Err(Error::config(
            "`DATABASE_URL` is set but empty: give it a database URL \
             (`postgres://user:password@host:port/database`), or unset it and call \
             `pglock_runtime::register(\"default\", config)`",
        )),
        Ok(url) => Config::from_url(&url)
            .map_err(|e| Error::config(format!("`DATABASE_URL` is not a valid database URL: {e}"))),
    }
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
    let config = default_config(std::env::var("DATABASE_URL")).map_err(|e| e.with_alias(name))?;
    let new = Alias::new(name, config)?;
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    Ok(map.entry(name.to_owned()).or_insert(new).clone())
}

/// One registered database: its name, configuration and pool.
pub(crate) struct Alias {
    pub(crate) name: Arc<str>,
    config: Config,
    /// TLS for every session and cancel request of the alias.
    tls: Connector,
    /// The `lock_timeout` its sessions open with (role, database or server
    /// setting), in ms, 0 for none: seen at the latest connect.
    base_lock_timeout_ms: Arc<AtomicU64>,
    /// Connections driven on pglock's own runtime.
    pool: Pool,
    /// Connections driven on callers' multi-thread runtimes, one pool per runtime
    /// (see [`Config::drive_on_caller_runtime`]).
    local: Mutex<HashMap<tokio::runtime::Id, Pool>>,
}

type Pool = managed::Pool<Manager>;

/// A session taken from a pool; back in it when dropped.
pub(crate) type Pooled = Object<Manager>;

impl Alias {
    /// Checks the configuration and reads its certificate files.
    fn new(name: &str, config: Config) -> Result<Arc<Alias>, Error> {
        let with_alias = |e: Error| e.with_alias(name);
        config.check().map_err(with_alias)?;
        let tls = config.connector().map_err(with_alias)?;
        let base = Arc::new(AtomicU64::new(0));
        Ok(Arc::new(Alias {
            name: Arc::from(name),
            pool: Alias::build_pool(name, &config, &tls, &base, false),
            config,
            tls,
            base_lock_timeout_ms: base,
            local: Mutex::new(HashMap::new()),
        }))
    }

    fn build_pool(
        name: &str,
        config: &Config,
        tls: &Connector,
        base_lock_timeout_ms: &Arc<AtomicU64>,
        on_caller: bool,
    ) -> Pool {
        let manager = Manager {
            alias: Arc::from(name),
            config: config.clone(),
            tls: tls.clone(),
            base_lock_timeout_ms: base_lock_timeout_ms.clone(),
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
        if id == rt::handle().id() {
            // pglock's own runtime (a task of it checking out): its pool is `pool`.
            return None;
        }
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
        let pool = Alias::build_pool(
            &self.name,
            &self.config,
            &self.tls,
            &self.base_lock_timeout_ms,
            true,
        );
        map.insert(id, pool.clone());
        Some(pool)
    }

    /// Takes a session from a pool: on a multi-thread runtime (unless configured
    /// otherwise) one driven by that runtime, else one driven by pglock's. See
    /// `Connection::checkout`, which wraps it.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Pooled, Error> {
        self.get_with(false).await
    }

    /// Like [`get`](Alias::get), but only a session that is free now (idle, or a
    /// new one within `max_size`): it never queues for one to come back.
    pub(crate) async fn get_free(self: &Arc<Self>) -> Result<Pooled, Error> {
        self.get_with(true).await
    }

    async fn get_with(self: &Arc<Self>, free_now: bool) -> Result<Pooled, Error> {
        let get = |pool: Pool| async move {
            let mut timeouts = pool.timeouts();
            if free_now {
                timeouts.wait = Some(std::time::Duration::ZERO);
            }
            pool.timeout_get(&timeouts).await
        };
        // The pool's timers need a tokio runtime: the caller's when it can run
        // them, otherwise pglock's own.
        let obj = if let Some(pool) = self.caller_pool() {
            get(pool).await
        } else if rt::caller_runtime_usable() {
            get(self.pool.clone()).await
        } else {
            let pool = self.pool.clone();
            rt::spawn(get(pool))
                .await
                .map_err(|e| Error::new(ErrorKind::Pool, format!("checkout task failed: {e}")))?
        };
        match obj {
            Ok(obj) => Ok(obj),
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

    /// The `lock_timeout` the alias's sessions open with (set for the role,
    /// the database or the server), as seen at the latest connect; `None` when
    /// it is 0 (no limit) or no session has been opened yet.
    pub(crate) fn session_lock_timeout(&self) -> Option<std::time::Duration> {
        match self.base_lock_timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// [`Config::heartbeat`]: how often a lock held on this alias is checked.
    pub(crate) fn heartbeat(&self) -> Option<std::time::Duration> {
        self.config.heartbeat
    }

    /// The alias's configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// [`Config::pipelined_release`].
    pub(crate) fn pipelined_release(&self) -> bool {
        self.config.pipelined_release
    }

    /// The connections of all of the alias's pools.
    pub(crate) fn status(&self) -> PoolStatus {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        std::iter::once(&self.pool)
            .chain(local.values())
            .map(Pool::status)
            .fold(PoolStatus { open: 0, idle: 0 }, |sum, s| PoolStatus {
                open: sum.open + s.size,
                idle: sum.idle + s.available,
            })
    }
}

/// Opens pglock's sessions for a pool, and tells live ones from closed ones.
pub(crate) struct Manager {
    alias: Arc<str>,
    config: Config,
    tls: Connector,
    /// Shared with the alias: see `Alias::session_lock_timeout`.
    base_lock_timeout_ms: Arc<AtomicU64>,
    /// Connect and drive on the runtime that asks for the connection (a caller's
    /// multi-thread runtime), not on pglock's.
    on_caller: bool,
}

impl managed::Manager for Manager {
    /// Shared so that a pipelined release can wait for its reply while the
    /// connection is already back in the pool (see `scope.rs`).
    type Type = Arc<Session>;
    type Error = Error;

    async fn create(&self) -> Result<Arc<Session>, Error> {
        let session = open(&self.config, &self.tls, &self.alias, self.on_caller).await?;
        if let Some(ms) = lock_timeout_ms(&session.base_lock_timeout) {
            self.base_lock_timeout_ms.store(ms, Ordering::Relaxed);
        }
        Ok(Arc::new(session))
    }

    async fn recycle(&self, conn: &mut Arc<Session>, _: &Metrics) -> RecycleResult<Error> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}

/// A `lock_timeout` as `SHOW lock_timeout` prints it (`0`, `500ms`, `2s`,
/// `1min`, `1h`, `1d`), in ms.
fn lock_timeout_ms(shown: &str) -> Option<u64> {
    let digits = shown.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    let unit = match &shown[digits.len()..] {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Opens a session of `alias`, driven on the caller's runtime (`on_caller`) or
/// on pglock's. The whole connect, startup and authentication included, is
/// bounded where it runs: a server that accepts and never answers must not keep
/// a task and a socket once the caller has given up (tokio-postgres's
/// `connect_timeout` bounds only the TCP connect).
async fn open(
    config: &Config,
    tls: &Connector,
    alias: &Arc<str>,
    on_caller: bool,
) -> Result<Session, Error> {
    let pg = config.pg.clone();
    let allow_standby = config.allow_standby;
    let pooling = config.pooling;
    let name = alias.clone();
    let connector = tls.clone();
    let bound = config.connect_timeout;
    let bounded = async move {
        // Boxed: a connect is rare, and its future is large (every checkout's
        // future would carry it).
        let connecting = Box::pin(connect(pg, connector, &name, allow_standby, pooling));
        tokio::time::timeout(bound, connecting)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Pool,
                    format!(
                        "could not connect to the server of alias `{name}` within {} \
                         (`Config::connect_timeout`): it accepted the connection but did not \
                         finish the startup",
                        humantime::format_duration(bound)
                    ),
                )
                .with_alias(&name))
            })
    };
    let (session, encrypted) = if on_caller {
        bounded.await
    } else {
        rt::spawn(bounded)
            .await
            .map_err(|e| Error::new(ErrorKind::Pool, format!("connect task failed: {e}")))?
    }?;
    // On the caller's thread, where its subscriber sees the event.
    tls.opened(encrypted, alias);
    Ok(session)
}

/// A session of `alias` of its own, outside the alias's pools (so that it never
/// waits for a pooled connection, nor takes one), driven by pglock's runtime;
/// closed when dropped. For the prioritize watchdog.
pub(crate) async fn dedicated_session(alias: &str) -> Result<Session, Error> {
    refuse_if_shutting_down(alias)?;
    let a = self::alias(alias)?;
    open(&a.config, &a.tls, &a.name, false).await
}

/// Opens a connection, spawns its driver on the current runtime, and reads
/// the facts pglock needs. Refuses a hot standby unless allowed. Also says
/// whether the session is encrypted.
async fn connect(
    pg: tokio_postgres::Config,
    tls: Connector,
    alias: &str,
    allow_standby: bool,
    pooling: Pooling,
) -> Result<(Session, bool), Error> {
    let (make_tls, encrypted) = tls.for_session();
    let (client, connection) = pg
        .connect(make_tls)
        .await
        .map_err(|e| connect_error(e, alias))?;
    let checks = Arc::new(Checks::default());
    let driver = tokio::spawn(driver::drive(connection, checks.clone(), alias.to_owned()));
    // Simple protocol: no prepared statement (a transaction pooler would run its
    // Parse and its Execute on different server sessions).
    let rows = client
        .simple_query(sql::CONNECTION_INFO)
        .await
        .map_err(|e| Error::from_pg(e).with_alias(alias))?;
    let row = first_row(&rows)
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
    // A pooler in between gave the client a cancel key of its own; the server
    // itself, or a plain forwarder, the server's. No I/O (see `wire/pooler.rs`).
    let key_pid = pooler::cancel_key_pid(&client).await;
    let route = Route::of(pooling, key_pid, pid);
    if key_pid.is_none() {
        tracing::debug!(target: "pglock", alias,
            "could not read the cancel key of a new session: no pooler detection");
    }
    if route != Route::Direct {
        tracing::debug!(target: "pglock", alias, pid, ?route,
            "the new session goes through a connection pooler");
    }
    let session = Session::new(client, pid, base_lock_timeout, route, checks, driver, tls);
    Ok((session, encrypted.get()))
}

fn connect_error(e: tokio_postgres::Error, alias: &str) -> Error {
    // A certificate that does not verify is the configuration's business.
    if let Some(why) = tls::explain(&e) {
        return Error::from_pg(e)
            .reclassify(
                ErrorKind::Configuration,
                &format!("cannot connect to the server of alias `{alias}`: {why}"),
            )
            .with_alias(alias);
    }
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

/// Set once by `shutdown`: no new checkout from then on.
static SHUTTING_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Refuses new checkouts from now on; `false` if that had already begun.
pub(crate) fn begin_shutdown() -> bool {
    !SHUTTING_DOWN.swap(true, std::sync::atomic::Ordering::SeqCst)
}

/// Whether `shutdown` has begun.
pub(crate) fn is_shutting_down() -> bool {
    SHUTTING_DOWN.load(std::sync::atomic::Ordering::SeqCst)
}

/// `Err(ShuttingDown)` once `shutdown` has begun.
pub(crate) fn refuse_if_shutting_down(alias: &str) -> Result<(), Error> {
    if is_shutting_down() {
        return Err(Error::new(
            ErrorKind::ShuttingDown,
            "`pglock_runtime::shutdown` was called: no new locks or connections",
        )
        .with_alias(alias));
    }
    Ok(())
}

/// Connections checked out now, over every alias (bodies running, guards
/// held, releases and return checks on the wire).
pub(crate) fn in_use() -> usize {
    every_alias()
        .iter()
        .map(|a| {
            let s = a.status();
            s.open - s.idle
        })
        .sum()
}

/// Closes every alias's pools: idle connections close now, checked-out ones
/// when they come back.
pub(crate) fn close_pools() {
    for a in every_alias() {
        a.pool.close();
        for pool in a.local.lock().unwrap_or_else(|e| e.into_inner()).values() {
            pool.close();
        }
    }
}

fn every_alias() -> Vec<Arc<Alias>> {
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect()
}

/// How many connections an alias has open, and how many of them are idle in its
/// pools (like deadpool's `Status`), from [`pool_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Connections open, in use or idle.
    pub open: usize,
    /// Connections idle in the pools, ready for a checkout.
    pub idle: usize,
}

/// Pool statistics of an alias, for tests and monitoring. `None` when the alias
/// is not configured.
///
/// ```
/// assert_eq!(pglock_runtime::pool_status("no-such-alias"), None);
/// ```
pub fn pool_status(alias: &str) -> Option<PoolStatus> {
    if !is_registered(alias) {
        return None;
    }
    self::alias(alias).ok().map(|a| a.status())
}

#[cfg(test)]
mod tests {
    use super::default_config;

    #[test]
    fn lock_timeouts_read_as_the_server_shows_them() {
        use super::lock_timeout_ms;
        for (shown, ms) in [
            ("0", Some(0)),
            ("500ms", Some(500)),
            ("2s", Some(2000)),
            ("1min", Some(60_000)),
            ("1h", Some(3_600_000)),
            ("1d", Some(86_400_000)),
            ("x", None),
            ("5us", None),
        ] {
            assert_eq!(lock_timeout_ms(shown), ms, "{shown}");
        }
    }

    #[test]
    fn default_config_says_what_is_wrong_with_database_url() {
        let unset = default_config(Err(std::env::VarError::NotPresent)).unwrap_err();
        assert!(
            unset.to_string().contains("set the `DATABASE_URL`"),
            "{unset}"
        );
        for empty in ["", "  "] {
            let e = default_config(Ok(empty.to_owned())).unwrap_err();
            assert!(
                e.to_string().contains("`DATABASE_URL` is set but empty"),
                "{e}"
            );
        }
        let bad = default_config(Ok("postgres://h:notaport/db".to_owned())).unwrap_err();
        assert!(
            bad.to_string().contains("not a valid database URL"),
            "{bad}"
        );
        assert!(default_config(Ok("postgres://localhost/db".to_owned())).is_ok());
    }
}
