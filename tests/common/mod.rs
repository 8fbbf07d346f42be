//! Shared helpers of pglock's integration tests: the database, a registry set up
//! once per test binary, unique keys, and `pg_locks` rows of pglock's keys.
//! Server-side observation through plain `tokio_postgres` sessions (never through
//! pglock itself) is `pglock_testkit::observe`, re-exported here.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use pglock_runtime::LockKey;
pub use pglock_testkit::observe::{
    advisory_holder, assert_gone, backend_pid, backend_state, connect, foreign_advisory_locks,
    is_gone, last_statement, query_value, session, settled_state, show_lock_timeout, simple_value,
    table_locker, table_reader, terminate, wait_until_blocked, wait_until_gone,
};
pub use pglock_testkit::within;
use tokio_postgres::Client;

static URL: OnceLock<String> = OnceLock::new();

/// The database URL of this test binary: the one chosen by [`setup`] or
/// [`setup_owned`] (`DATABASE_URL` or a throw-away cluster by default).
pub fn url() -> &'static str {
    URL.get_or_init(pglock_testkit::database_url)
}

/// A URL of the harness's cluster for an ordinary role
/// ([`pglock_testkit::APP_ROLE`]): the sessions an application has, which a
/// watchdog running as `postgres` may signal (it spares superusers' sessions).
pub fn app_url() -> String {
    pglock_testkit::shared_cluster().app_url()
}

/// Registers the `"default"` alias once per test binary, on `DATABASE_URL` when it
/// is set, otherwise on a throw-away cluster.
pub fn setup() {
    register_default(url());
}

/// Like [`setup`], but always on a cluster the harness started, whatever
/// `DATABASE_URL` says: for test binaries that terminate backends or otherwise
/// disturb the server.
///
/// # Panics
///
/// If [`setup`] already chose `DATABASE_URL` for this test binary.
pub fn setup_owned() {
    let owned = pglock_testkit::shared_cluster().url();
    let chosen = URL.get_or_init(|| owned.clone());
    assert_eq!(
        chosen, &owned,
        "this test binary must use a cluster the harness started: call setup_owned(), not setup()"
    );
    register_default(chosen);
}

/// The alias `"other"`: the same database through a pool of its own, standing for
/// another process (tasks of one process queue in-process for an exclusive key;
/// tasks of two aliases meet on the server).
pub fn other() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let config = pglock_runtime::Config::from_url(url()).expect("valid URL");
        pglock_runtime::register("other", config).expect("first registration");
    });
    "other"
}

fn register_default(url: &str) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let config = pglock_runtime::Config::from_url(url)
            .expect("valid URL")
            .max_size(64)
            .checkout_timeout(Duration::from_secs(20));
        pglock_runtime::register("default", config).expect("first registration");
    });
}

/// A private alias with a single connection, so that "the next checkout" is
/// deterministic.
pub fn one_connection_alias(name: &'static str) -> &'static str {
    pglock_runtime::register(
        name,
        pglock_runtime::Config::from_url(url())
            .expect("valid URL")
            .max_size(1)
            .checkout_timeout(Duration::from_secs(10)),
    )
    .expect("first registration");
    name
}

/// A key no other test of this process uses, spread over the whole `i64` range
/// (negative keys included) and salted with the process id.
pub fn unique_key() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as u64;
    // splitmix64 of (pid, n)
    let mut z = (u64::from(std::process::id()) << 32 | n).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as i64
}

/// A plain session on this test binary's database, for observing the server
/// independently of pglock.
pub async fn observer() -> Client {
    connect(url()).await
}

/// A row of `pg_locks` for an advisory key, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryRow {
    /// Backend pid.
    pub pid: i32,
    /// Lock mode.
    pub mode: String,
    /// Granted, or waiting.
    pub granted: bool,
}

/// The `pg_locks` rows of `key` in the current database.
pub async fn advisory_rows(obs: &Client, key: LockKey) -> Vec<AdvisoryRow> {
    let (c, o, s) = key.pg_locks_ids();
    obs.query(
        "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = $1 AND objid = $2 AND objsubid = $3 ORDER BY pid",
        &[&c, &o, &s],
    )
    .await
    .expect("pg_locks query")
    .iter()
    .map(|r| AdvisoryRow {
        pid: r.get(0),
        mode: r.get(1),
        granted: r.get(2),
    })
    .collect()
}

/// The pids holding `key` (granted rows only).
pub async fn holders(obs: &Client, key: LockKey) -> Vec<i32> {
    advisory_rows(obs, key)
        .await
        .into_iter()
        .filter(|r| r.granted)
        .map(|r| r.pid)
        .collect()
}

/// Waits until `key` has no row at all in `pg_locks` (granted or waiting); panics
/// after 10 s with what is still there.
pub async fn assert_released(obs: &Client, key: LockKey) {
    for _ in 0..500 {
        if advisory_rows(obs, key).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "advisory lock {key} still in pg_locks: {:?}",
        advisory_rows(obs, key).await
    );
}

/// Waits until some backend is waiting for `key`; panics after 10 s.
pub async fn wait_for_waiter(obs: &Client, key: LockKey) -> i32 {
    for _ in 0..500 {
        if let Some(r) = advisory_rows(obs, key)
            .await
            .into_iter()
            .find(|r| !r.granted)
        {
            return r.pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nobody started waiting for {key}");
}

/// Waits until some backend holds `key` and returns its pid; panics after 10 s.
pub async fn wait_for_holder(obs: &Client, key: LockKey) -> i32 {
    for _ in 0..2000 {
        if let Some(p) = holders(obs, key).await.first() {
            return *p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("nobody took {key}");
}

/// Terminates the backend holding `key` as soon as one holds it. Only for test
/// binaries on a cluster the harness started ([`setup_owned`]).
pub fn terminate_holder(key: LockKey) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let obs = observer().await;
        let pid = wait_for_holder(&obs, key).await;
        terminate(&obs, pid).await;
    })
}

/// A fresh table name with a row, created through the observer, usable by
/// every role (blockers may be ordinary roles).
pub async fn fresh_table(obs: &Client, prefix: &str) -> String {
    let name = format!("{prefix}_{}", unique_key().unsigned_abs());
    obs.batch_execute(&format!(
        "CREATE TABLE {name} (x int); INSERT INTO {name} VALUES (1); \
         GRANT ALL ON {name} TO PUBLIC"
    ))
    .await
    .expect("create table");
    name
}
/// A run as pglock's record of scheduled runs (`pglock.runs`) holds it, read by
/// the observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// The job's name.
    pub job: String,
    /// The slot's label.
    pub slot: String,
    /// 1 for the first run of the slot, more when `retry` ran it again.
    pub attempt: i32,
    /// `started`, `succeeded`, `failed` or `panicked`.
    pub outcome: String,
    /// Whether `finished_at` is set.
    pub finished: bool,
    /// Who ran it.
    pub application_name: String,
    /// The host name of the process that ran it.
    pub host: String,
    /// The operating-system pid of the process that ran it.
    pub client_pid: Option<i32>,
    /// The backend that ran its lock.
    pub backend_pid: Option<i32>,
    /// The slot length (`once_per`) in milliseconds.
    pub period_ms: Option<i64>,
    /// The slot's start, in milliseconds since the Unix epoch, when it has one.
    pub slot_start_ms: Option<i64>,
}

/// The rows of `pglock.runs` for `key`, by slot label; none when the schema is
/// not installed on that server.
pub async fn runs_of(obs: &Client, key: LockKey) -> Vec<RunRow> {
    let installed: bool = obs
        .query_one("SELECT to_regclass('pglock.runs') IS NOT NULL", &[])
        .await
        .expect("look for pglock.runs")
        .get(0);
    if !installed {
        return Vec::new();
    }
    let (c, o, s) = key.pg_locks_ids();
    obs.query(
        "SELECT job, slot, attempt, outcome, finished_at IS NOT NULL, \
         coalesce(application_name, ''), coalesce(host, ''), client_pid, backend_pid, \
         (extract(epoch FROM period) * 1000)::int8, \
         (extract(epoch FROM slot_start) * 1000)::int8 \
         FROM pglock.runs WHERE classid = $1 AND objid = $2 AND objsubid = $3 ORDER BY slot",
        &[&c, &o, &s],
    )
    .await
    .expect("read pglock.runs")
    .iter()
    .map(|r| RunRow {
        job: r.get(0),
        slot: r.get(1),
        attempt: r.get(2),
        outcome: r.get(3),
        finished: r.get(4),
        application_name: r.get(5),
        host: r.get(6),
        client_pid: r.get(7),
        backend_pid: r.get(8),
        period_ms: r.get(9),
        slot_start_ms: r.get(10),
    })
    .collect()
}

/// An alias on the test database whose sessions carry `application_name`, so
/// that what pglock records about "who ran it" can be told apart.
pub fn named_alias(name: &'static str, application_name: &str) -> &'static str {
    let mut config: tokio_postgres::Config = url().parse().expect("valid URL");
    config.application_name(application_name);
    pglock_runtime::register(name, pglock_runtime::Config::new(config))
        .expect("first registration");
    name
}

/// The events of this thread at `DEBUG` and above, formatted, while the guard
/// lives (a thread-local subscriber: use it on a current-thread runtime).
pub fn capture_events() -> (tracing::subscriber::DefaultGuard, CapturedEvents) {
    let captured = CapturedEvents::default();
    let writer = {
        let captured = captured.clone();
        move || captured.clone()
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    (tracing::subscriber::set_default(subscriber), captured)
}

/// What [`capture_events`] captured.
#[derive(Debug, Clone, Default)]
pub struct CapturedEvents(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedEvents {
    /// The formatted events so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for CapturedEvents {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records every span (its name, fields and parent) while the guard lives, on
/// this thread, for tests of pglock's spans.
pub fn capture_spans() -> (tracing::subscriber::DefaultGuard, CapturedSpans) {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = CapturedSpans::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    (tracing::subscriber::set_default(subscriber), captured)
}

/// One span [`capture_spans`] saw.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// Its id, unique while the capture lasts.
    pub id: u64,
    /// Its name.
    pub name: &'static str,
    /// Its fields as formatted text, with values recorded later.
    pub fields: std::collections::BTreeMap<String, String>,
    /// The id of its parent span, if it has one.
    pub parent: Option<u64>,
}

impl SpanRecord {
    /// The value of `field`, if it was recorded.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

/// What [`capture_spans`] captured.
#[derive(Debug, Clone, Default)]
pub struct CapturedSpans(std::sync::Arc<std::sync::Mutex<Vec<SpanRecord>>>);

impl CapturedSpans {
    /// Every span so far, in creation order.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The spans named `name`.
    pub fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }
}

struct FieldText<'a>(&'a mut std::collections::BTreeMap<String, String>);

impl tracing::field::Visit for FieldText<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for CapturedSpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = std::collections::BTreeMap::new();
        attrs.record(&mut FieldText(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SpanRecord {
                id: id.into_u64(),
                name: attrs.metadata().name(),
                fields,
                parent,
            });
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut spans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = spans.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            values.record(&mut FieldText(&mut s.fields));
        }
    }
}
