//! How to reach one database, and how many connections to keep for it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;
use crate::pool::conninfo;
use crate::wire::pooler::Pooling;
use crate::wire::tls::{Connector, SslMode, TlsSettings};

/// The schema pglock keeps its own tables in unless [`Config::schema`] says
/// otherwise.
pub(crate) const DEFAULT_SCHEMA: &str = "pglock";
#[cfg(doc)]
use crate::error::ErrorKind;

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
    pub(super) pg: tokio_postgres::Config,
    pub(super) max_size: usize,
    pub(super) checkout_timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) allow_standby: bool,
    pub(super) heartbeat: Option<Duration>,
    pub(super) pooling: Pooling,
    pub(super) pipelined_release: bool,
    pub(super) drive_on_caller_runtime: bool,
    pub(super) schema: String,
    pub(super) tls: TlsSettings,
}

/// The socket settings pglock's sessions get unless the URL or the
/// `tokio_postgres::Config` set them: a peer that stopped answering is noticed
/// in about half a minute rather than the operating system's two hours.
pub(crate) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle time before the first keepalive probe (tokio-postgres: 2 h).
pub(crate) const KEEPALIVES_IDLE: Duration = Duration::from_secs(15);
/// Time between unanswered keepalive probes.
pub(crate) const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before the connection is closed.
pub(crate) const KEEPALIVES_RETRIES: u32 = 3;
/// The largest [`Config::max_size`].
const MAX_POOL_SIZE: usize = 10_000;
/// The longest [`Config::heartbeat`] interval.
const MAX_HEARTBEAT: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest [`Config::answer_deadline`].
const MIN_ANSWER_DEADLINE: Duration = Duration::from_secs(3);
/// tokio-postgres's default `keepalives_idle`, which means "not set".
const TOKIO_POSTGRES_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

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
            .field("pooling", &self.pooling)
            .field("pipelined_release", &self.pipelined_release)
            .field("drive_on_caller_runtime", &self.drive_on_caller_runtime)
            .field("schema", &self.schema)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Config {
    /// A configuration from a `tokio_postgres` one, with the default pool settings:
    /// 16 connections, a 30 s checkout wait, a 10 s connect timeout, standbys refused.
    ///
    /// What the `tokio_postgres::Config` leaves unset gets pglock's defaults:
    /// `application_name` is the program's file name (see
    /// [`Config::application_name`]); the socket gives up on a silent peer in
    /// about 30 s (`tcp_user_timeout` 30 s; keepalives after 15 s idle, every
    /// 5 s, 3 tries) instead of the operating system's two hours. Its
    /// `sslmode` (tokio-postgres knows `disable`, `prefer`, `require`) carries
    /// over; [`Config::ssl_mode`] has all five.
    pub fn new(pg: tokio_postgres::Config) -> Config {
        let tls = TlsSettings::from_pg(&pg);
        Config::with_tls(pg, tls)
    }

    fn with_tls(pg: tokio_postgres::Config, tls: TlsSettings) -> Config {
        let mut pg = pg;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        if pg.get_tcp_user_timeout().is_none() {
            pg.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if pg.get_keepalives_idle() == TOKIO_POSTGRES_KEEPALIVES_IDLE {
            pg.keepalives_idle(KEEPALIVES_IDLE);
        }
        if pg.get_keepalives_interval().is_none() {
            pg.keepalives_interval(KEEPALIVES_INTERVAL);
        }
        if pg.get_keepalives_retries().is_none() {
            pg.keepalives_retries(KEEPALIVES_RETRIES);
        }
        if pg.get_application_name().is_none() {
            if let Some(name) = program_name() {
                pg.application_name(&name);
            }
        }
        pg.ssl_mode(tls.pg_mode());
        let connect_timeout = *pg.get_connect_timeout().expect("set above");
        Config {
            tls,
            pg,
            max_size: 16,
            checkout_timeout: Duration::from_secs(30),
            connect_timeout,
            allow_standby: false,
            heartbeat: Some(Duration::from_secs(1)),
            pooling: Pooling::Detect,
            pipelined_release: true,
            drive_on_caller_runtime: true,
            schema: DEFAULT_SCHEMA.to_owned(),
        }
    }

    /// Parses a libpq URL (`postgres://user:pass@host:port/db?…`) or a key=value
    /// connection string (`host=… user=… dbname=…`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Configuration`] saying what is malformed.
    ///
    /// Besides what `tokio_postgres` reads, it takes libpq's TLS parameters:
    /// `sslmode` (`disable`, `prefer` — the default —, `require`, `verify-ca`,
    /// `verify-full`), `sslrootcert` (a PEM file, or `system`), `sslcert` and
    /// `sslkey` (a client certificate). [`Config::ssl_mode`] says what each
    /// mode checks.
    ///
    /// ```
    /// use pglock_runtime::{Config, SslMode};
    ///
    /// let config = Config::from_url(
    ///     "postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
    /// )?;
    /// assert_eq!(config.get_ssl_mode(), SslMode::VerifyFull);
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Config, Error> {
        let (rest, tls) = conninfo::split_tls(url)
            .map_err(|e| Error::config(format!("invalid database URL: {e}")).with_source(e))?;
        // A build without TLS says so now rather than at the first connection.
        tls.check_supported()?;
        tokio_postgres::Config::from_str(&rest)
            .map(|pg| Config::with_tls(pg, tls))
            .map_err(|e| {
                Error::config(format!(
                    "invalid database URL: {}; expected `postgres://user:password@host:port/database` \
                     or `host=… user=… dbname=…`",
                    crate::error::with_causes(&e)
                ))
                .with_source(e)
            })
    }

    /// How the connections use TLS (PostgreSQL's `sslmode`; the URL's
    /// `?sslmode=` sets it too):
    ///
    /// | mode | encrypted | the server's certificate |
    /// |---|---|---|
    /// | [`Disable`](SslMode::Disable) | never | — |
    /// | [`Prefer`](SslMode::Prefer) (default) | when the server offers TLS; otherwise plaintext, with a warning event once per alias (not for a host named `localhost`, a loopback address or a Unix socket) | checked against `sslrootcert` if one is found, else not |
    /// | [`Require`](SslMode::Require) | always | checked against `sslrootcert` if one is found (as `verify-ca`), else not |
    /// | [`VerifyCa`](SslMode::VerifyCa) | always | signed by a CA in `sslrootcert` |
    /// | [`VerifyFull`](SslMode::VerifyFull) | always | signed by a CA in `sslrootcert`, and valid for the host name connected to |
    ///
    /// `sslrootcert` is [`Config::ssl_root_cert`]; without it, libpq's default
    /// `~/.postgresql/root.crt` counts when it exists. Cancel requests (of
    /// abandoned waits) use the same settings. In a build without the `tls`
    /// feature, modes from `require` up make [`register`](crate::register) fail.
    ///
    /// ```
    /// use pglock_runtime::{Config, SslMode};
    ///
    /// let config = Config::from_url("postgres://app@db.internal/app")?
    ///     .ssl_mode(SslMode::VerifyFull)
    ///     .ssl_root_cert("/etc/ssl/db-ca.pem");
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    pub fn ssl_mode(mut self, mode: SslMode) -> Config {
        self.tls.mode = Some(mode);
        self.pg.ssl_mode(self.tls.pg_mode());
        self
    }

    /// The `sslmode` in effect ([`Config::ssl_mode`]).
    pub fn get_ssl_mode(&self) -> SslMode {
        self.tls.mode()
    }

    /// The CA certificates (a PEM file) the server's certificate must chain
    /// to, or `"system"` for the operating system's trusted roots (then only
    /// [`SslMode::VerifyFull`] is allowed, and it is the default mode, as in
    /// libpq). The file is read when the alias is registered.
    pub fn ssl_root_cert(mut self, path: impl Into<std::path::PathBuf>) -> Config {
        self.tls.root_cert = Some(path.into());
        self.pg.ssl_mode(self.tls.pg_mode());
        self
    }

    /// A client certificate (chain) and its private key, both PEM files, for
    /// servers that authenticate clients by certificate (`hostssl … cert`).
    pub fn ssl_client_cert(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Config {
        self.tls.client_cert = Some(cert.into());
        self.tls.client_key = Some(key.into());
        self
    }

    /// The name the sessions show in `pg_stat_activity` (and in the `pglock`
    /// CLI and pglock's record of scheduled runs). Default: the URL's
    /// `application_name`, else the program's file name.
    ///
    /// ```
    /// let config = pglock_runtime::Config::from_url("postgres://localhost/app")?
    ///     .application_name("billing-worker");
    /// assert_eq!(config.pg_config().get_application_name(), Some("billing-worker"));
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    pub fn application_name(mut self, name: &str) -> Config {
        self.pg.application_name(name);
        self
    }

    /// The connector the alias's sessions and cancel requests use: the
    /// certificate files are read here.
    pub(crate) fn connector(&self) -> Result<Connector, Error> {
        self.tls.connector(names_local_host(&self.pg))
    }

    /// The largest number of connections the alias opens: at least 1, at most
    /// 10,000 (more than any PostgreSQL server is configured to accept; a
    /// larger value is clamped, as `usize::MAX` would overflow the pool).
    pub fn max_size(mut self, n: usize) -> Config {
        self.max_size = n.clamp(1, MAX_POOL_SIZE);
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

    /// How often a held lock is checked on its own session (one prepared
    /// `SELECT 1` per interval, only while a lock is held: it proves the session
    /// alive, which is what keeps a session lock, and costs the same whatever
    /// the server's lock count), bounding how long a lost lock goes unnoticed:
    /// [`AdvisoryGuard::lost`](crate::AdvisoryGuard::lost) and `on_lost = cancel`
    /// rely on it. Default 1 s; `None` turns it off. Values
    /// are kept between 10 ms and a day. A check unanswered for
    /// [`Config::answer_deadline`] counts as a loss.
    pub fn heartbeat(mut self, every: Option<Duration>) -> Config {
        // A day at most: a longer interval is no heartbeat, and `Instant`
        // arithmetic on `Duration::MAX` would overflow.
        self.heartbeat = every.map(|d| d.clamp(Duration::from_millis(10), MAX_HEARTBEAT));
        self
    }

    /// How long pglock waits for the server to answer one of its own short
    /// statements on a session — a heartbeat check of a held lock, a release,
    /// the check before a used connection goes back to the pool — before it
    /// counts the session as gone and closes it: three heartbeat intervals, and
    /// at least 3 s (3 s with the heartbeat off).
    ///
    /// That is what notices a silent network partition or a frozen server
    /// while a lock is held: the heartbeat check gets no answer, the lock
    /// counts as lost ([`AdvisoryGuard::lost`](crate::AdvisoryGuard::lost),
    /// `on_lost = cancel`), and the session is closed. A check queued behind a
    /// statement of the body on the same session (the body used
    /// [`connection()`](crate::connection())) is not held to it, since the
    /// body's statement may rightly take long: there the socket settings
    /// (`tcp_user_timeout`, keepalives, see [`Config::new`]) bound a partition.
    ///
    /// The server's side: once a lock has been held for an interval, its
    /// session gets `idle_session_timeout` and
    /// `idle_in_transaction_session_timeout` of twice this deadline (reset with
    /// the release), so a holder that went silent is ended by the server, and its
    /// locks freed, after the holder itself has given up; a live holder's
    /// heartbeat keeps it from ever idling that long.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = pglock_runtime::Config::from_url("postgres://localhost/app")?;
    /// assert_eq!(config.answer_deadline(), Duration::from_secs(3));
    /// let config = config.heartbeat(Some(Duration::from_secs(5)));
    /// assert_eq!(config.answer_deadline(), Duration::from_secs(15));
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    pub fn answer_deadline(&self) -> Duration {
        self.heartbeat
            .map_or(MIN_ANSWER_DEADLINE, |every| every.saturating_mul(3))
            .max(MIN_ANSWER_DEADLINE)
    }

    /// The schema pglock keeps its own tables in on this alias (the record of
    /// scheduled runs, lock names): created on first use by a call that needs it,
    /// or by an administrator from the SQL `pglock schema` prints. Default
    /// `"pglock"`.
    ///
    /// ```
    /// let config = pglock_runtime::Config::from_url("postgres://app@localhost/app")?
    ///     .schema("app_pglock");
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    ///
    /// An empty name, or one longer than PostgreSQL's 63-byte identifiers, makes
    /// [`register`](crate::register) fail with [`ErrorKind::Configuration`].
    pub fn schema(mut self, name: &str) -> Config {
        self.schema = name.to_owned();
        self
    }

    /// [`Config::schema`].
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// What [`register`](crate::register) refuses.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.schema.is_empty() || self.schema.len() > 63 {
            return Err(Error::config(format!(
                "`Config::schema({:?})`: pglock's schema needs a name of 1 to 63 bytes \
                 (a PostgreSQL identifier)",
                self.schema
            )));
        }
        Ok(())
    }

    /// Declares that the alias connects through a transaction-pooling proxy
    /// (PgBouncer `pool_mode = transaction`): `pooling(Pooling::Transaction)`,
    /// and `false` is `pooling(Pooling::Detect)`, the default. pglock then uses
    /// unnamed statements only, refuses session-level locks and session
    /// `lock_timeout` scopes with [`ErrorKind::Pooler`] (they would not stay
    /// with the connection), and keeps transaction-level (`xact`) locks and
    /// table locks working.
    ///
    /// Undeclared, pglock notices a pooler when it connects (the cancel key the
    /// client gets is the pooler's, not the server's) and behaves the same,
    /// with a message that says how to declare the mode; see [`Pooling`].
    ///
    /// ```
    /// use pglock_runtime::{Config, Pooling};
    ///
    /// let config = Config::from_url("postgres://app@127.0.0.1:6432/app")?
    ///     .transaction_pooling(true);
    /// assert_eq!(config.get_pooling(), Pooling::Transaction);
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    pub fn transaction_pooling(self, on: bool) -> Config {
        self.pooling(if on {
            Pooling::Transaction
        } else {
            Pooling::Detect
        })
    }

    /// Declares what the alias's connections go through ([`Pooling`]):
    /// `Detect` (the default) looks at each new connection; `Session` allows
    /// session-level locks behind a pooler in session mode; `Transaction` is
    /// [`Config::transaction_pooling(true)`](Config::transaction_pooling).
    ///
    /// ```
    /// use pglock_runtime::{Config, Pooling};
    ///
    /// // PgBouncer with `pool_mode = session` in front of the database.
    /// let config = Config::from_url("postgres://app@127.0.0.1:6432/app")?
    ///     .pooling(Pooling::Session);
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    pub fn pooling(mut self, pooling: Pooling) -> Config {
        self.pooling = pooling;
        self
    }

    /// What the alias's connections are declared to go through
    /// ([`Config::pooling`]).
    ///
    /// ```
    /// use pglock_runtime::{Config, Pooling};
    ///
    /// let config = Config::from_url("postgres://app@127.0.0.1/app")?;
    /// assert_eq!(config.get_pooling(), Pooling::Detect);
    /// # Ok::<(), pglock_runtime::Error>(())
    /// ```
    pub fn get_pooling(&self) -> Pooling {
        self.pooling
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

    /// Whether [`Config::transaction_pooling`] declares a transaction pooler.
    pub(crate) fn declares_transaction_pooling(&self) -> bool {
        self.pooling == Pooling::Transaction
    }

    /// The underlying `tokio_postgres` configuration.
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg
    }
}

/// Whether every host the configuration names is this machine (a Unix socket,
/// `localhost`, an address in 127.0.0.0/8 or `::1`): plaintext there is not
/// worth a warning.
fn names_local_host(pg: &tokio_postgres::Config) -> bool {
    use tokio_postgres::config::Host;
    !pg.get_hosts().is_empty()
        && pg.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
}

/// The program's file name, as the sessions' default `application_name`
/// (at most 63 bytes, PostgreSQL's limit).
fn program_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let mut name = exe.file_name()?.to_string_lossy().into_owned();
    while name.len() > 63 {
        name.pop();
    }
    Some(name).filter(|n| !n.is_empty())
}

impl FromStr for Config {
    type Err = Error;

    fn from_str(s: &str) -> Result<Config, Error> {
        Config::from_url(s)
    }
}
