//! Observing and arranging the server from outside the code under test: plain
//! `tokio_postgres` sessions (never through pglock), backends looked up in
//! `pg_stat_activity`, and sessions arranged to block others.
//!
//! Every helper panics with a message when the server does not answer as
//! expected, and every wait is bounded.

use std::time::Duration;

use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage, SimpleQueryRow};

/// How often the waits below look again, and how many times at most.
const POLL: Duration = Duration::from_millis(20);
const POLLS: u32 = 500;

/// A plain session to `url`, its connection driven by a task of its own.
///
/// # Panics
///
/// When `url` is not a valid URL or the server cannot be reached.
pub async fn connect(url: &str) -> Client {
    connect_with(url.parse().expect("valid URL")).await
}

/// Like [`connect`], with an `application_name` (for arranging blockers and
/// waiters, and for finding them in `pg_stat_activity`).
///
/// # Panics
///
/// When `url` is not a valid URL or the server cannot be reached.
pub async fn session(url: &str, application_name: &str) -> Client {
    let mut config: Config = url.parse().expect("valid URL");
    config.application_name(application_name);
    connect_with(config).await
}

async fn connect_with(config: Config) -> Client {
    let (client, conn) = config.connect(NoTls).await.expect("session connects");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The first column of the one row `sql` (a statement without parameters)
/// returns.
///
/// # Panics
///
/// When the statement fails or does not return exactly one row.
pub async fn query_value<T: FromSqlOwned>(client: &Client, sql: &str) -> T {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The first row of a simple query's result, if it has one.
pub fn first_row(messages: &[SimpleQueryMessage]) -> Option<&SimpleQueryRow> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

/// The first column of the first row `sql` returns, run as a simple query (one
/// implicit transaction of its own outside a transaction block, text results);
/// `None` when it returns no row or a NULL.
///
/// # Panics
///
/// When the statement fails.
pub async fn simple_value(client: &Client, sql: &str) -> Option<String> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    first_row(&messages)?.get(0).map(str::to_owned)
}

/// The backend pid of a session, asked with the simple-query protocol: no
/// prepared statement, so that it also works through a pooler whose server
/// sessions carry other clients' statements.
///
/// # Panics
///
/// When the statement fails.
pub async fn backend_pid(client: &Client) -> i32 {
    simple_value(client, "SELECT pg_backend_pid()")
        .await
        .and_then(|p| p.parse().ok())
        .expect("a pid")
}

/// `SHOW lock_timeout` on a session.
pub async fn show_lock_timeout(client: &Client) -> String {
    query_value(client, "SHOW lock_timeout").await
}

/// The state of backend `pid` in `pg_stat_activity` (empty when it has none),
/// `None` once the backend is gone.
pub async fn backend_state(obs: &Client, pid: i32) -> Option<String> {
    obs.query_opt("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .expect("pg_stat_activity query")
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
}

/// Waits up to 10 s for backend `pid` to be `idle` (what it ran after the
/// caller returned, such as a connection's return check, may still be on the
/// wire); returns its last state.
pub async fn settled_state(obs: &Client, pid: i32) -> Option<String> {
    let mut state = backend_state(obs, pid).await;
    for _ in 0..POLLS {
        if state.as_deref() != Some("active") {
            break;
        }
        tokio::time::sleep(POLL).await;
        state = backend_state(obs, pid).await;
    }
    state
}

/// Whether backend `pid` is gone from `pg_stat_activity`, now.
pub async fn is_gone(obs: &Client, pid: i32) -> bool {
    backend_state(obs, pid).await.is_none()
}

/// Waits up to 10 s for backend `pid` to be gone; returns whether it went.
pub async fn wait_until_gone(obs: &Client, pid: i32) -> bool {
    for _ in 0..POLLS {
        if is_gone(obs, pid).await {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

/// Waits until backend `pid` is gone.
///
/// # Panics
///
/// When it is still there after 10 s.
pub async fn assert_gone(obs: &Client, pid: i32) {
    assert!(
        wait_until_gone(obs, pid).await,
        "backend {pid} is still there"
    );
}

/// Waits until backend `pid` waits for a lock (`wait_event_type = 'Lock'`).
///
/// # Panics
///
/// When it has not started waiting after 10 s.
pub async fn wait_until_blocked(obs: &Client, pid: i32) {
    for _ in 0..POLLS {
        let waiting: bool = obs
            .query_one(
                "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(false);
        if waiting {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("backend {pid} never started waiting for a lock");
}

/// Waits until the current or last statement of backend `pid`
/// (`pg_stat_activity.query`) starts with `prefix`.
///
/// # Panics
///
/// When it does not within 10 s.
pub async fn wait_until_query_starts_with(obs: &Client, pid: i32, prefix: &str) {
    for _ in 0..POLLS {
        let query: Option<String> = obs
            .query_opt("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .expect("pg_stat_activity query")
            .and_then(|r| r.get(0));
        if query.is_some_and(|q| q.starts_with(prefix)) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("backend {pid} never ran a statement starting with {prefix:?}");
}

/// Terminates backend `pid` (`pg_terminate_backend`).
///
/// # Panics
///
/// When the statement fails (for instance for lack of privilege).
pub async fn terminate(obs: &Client, pid: i32) {
    obs.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("pg_terminate_backend");
}

/// A blocker: a plain session named `application_name` that read `table` in a
/// transaction it keeps open (holding `AccessShareLock` on it), and its backend
/// pid.
///
/// # Panics
///
/// When the session cannot connect or the read fails.
pub async fn table_reader(url: &str, application_name: &str, table: &str) -> (Client, i32) {
    let s = session(url, application_name).await;
    let pid = backend_pid(&s).await;
    s.batch_execute(&format!("BEGIN; SELECT * FROM {table}"))
        .await
        .expect("the reader reads the table");
    (s, pid)
}

/// A session that is not a client backend holding a lock: a plain session named
/// `application_name` runs a query on `table` (which must have a row) in a
/// parallel worker for `seconds` (`force_parallel_mode`, called
/// `debug_parallel_query` from PostgreSQL 16; the leader does not scan), and
/// once the worker holds `AccessShareLock` on `table`: the query's task, the
/// leader's pid and the worker's pid.
///
/// # Panics
///
/// When the session cannot connect, or no parallel worker locks `table` within
/// 10 s.
pub async fn parallel_reader(
    url: &str,
    obs: &Client,
    application_name: &str,
    table: &str,
    seconds: u32,
) -> (
    tokio::task::JoinHandle<Result<Client, tokio_postgres::Error>>,
    i32,
    i32,
) {
    let s = session(url, application_name).await;
    let leader = backend_pid(&s).await;
    let newer: bool = simple_value(
        &s,
        "SELECT current_setting('server_version_num')::int >= 160000",
    )
    .await
    .is_some_and(|v| v == "t");
    let force = if newer {
        "debug_parallel_query"
    } else {
        "force_parallel_mode"
    };
    s.batch_execute(&format!(
        "SET {force} = on; SET parallel_leader_participation = off; \
         SET max_parallel_workers_per_gather = 1"
    ))
    .await
    .expect("parallel settings");
    let sql = format!("SELECT count(*) FROM {table} WHERE pg_sleep({seconds}) IS NOT NULL");
    let task = tokio::spawn(async move { s.batch_execute(&sql).await.map(|()| s) });
    for _ in 0..POLLS {
        let worker: Option<i32> = obs
            .query_opt(
                "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE l.relation = $1::text::regclass AND a.backend_type = 'parallel worker' \
                 AND a.leader_pid = $2",
                &[&table, &leader],
            )
            .await
            .expect("pg_locks query")
            .map(|r| r.get(0));
        if let Some(worker) = worker {
            return (task, leader, worker);
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("no parallel worker of {leader} locked {table}");
}

/// A blocker: a plain session named `application_name` that locked `table` in
/// `mode` (`ACCESS EXCLUSIVE`, `SHARE`, …) in a transaction it keeps open, and
/// its backend pid.
///
/// # Panics
///
/// When the session cannot connect or the lock is not granted.
pub async fn table_locker(
    url: &str,
    application_name: &str,
    table: &str,
    mode: &str,
) -> (Client, i32) {
    let s = session(url, application_name).await;
    let pid = backend_pid(&s).await;
    s.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN {mode} MODE"))
        .await
        .expect("the locker locks the table");
    (s, pid)
}

/// A blocker: a plain session named `application_name` holding the session-level
/// advisory lock `key`, and its backend pid.
///
/// # Panics
///
/// When the session cannot connect or the lock is not granted.
pub async fn advisory_holder(url: &str, application_name: &str, key: i64) -> (Client, i32) {
    let s = session(url, application_name).await;
    let pid = backend_pid(&s).await;
    s.execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .expect("the holder takes the lock");
    (s, pid)
}

/// A plain session named `application_name` holding `n` session-level advisory
/// locks (keys `first .. first + n`, 64-bit): a server whose lock table is big,
/// for measuring what grows with it (a `pg_locks` read copies the whole table).
/// The harness's clusters have room for 38,400 locks (`max_locks_per_transaction`
/// 128 × 300 connections).
///
/// ```no_run
/// # async fn f(url: &str) {
/// let busy = pglock_testkit::observe::foreign_advisory_locks(url, "foreign", 1 << 40, 10_000).await;
/// # }
/// ```
///
/// # Panics
///
/// When the session cannot connect or the locks are not all granted.
pub async fn foreign_advisory_locks(
    url: &str,
    application_name: &str,
    first: i64,
    n: i64,
) -> Client {
    let s = session(url, application_name).await;
    s.execute(
        "SELECT pg_advisory_lock(k) FROM generate_series($1::int8, $1::int8 + $2 - 1) k",
        &[&first, &n],
    )
    .await
    .expect("the foreign session takes its locks");
    let taken: i64 = s
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_locks query")
        .get(0);
    assert_eq!(taken, n, "every foreign lock granted");
    s
}

/// The last statement of backend `pid` as `pg_stat_activity` shows it, and how
/// long the server spent on it (`state_change - query_start`), once the backend
/// is idle: `None` while it runs a statement, or when it is gone. The duration is
/// measured by the server, so it does not include the round trip.
///
/// ```no_run
/// # async fn f(obs: &tokio_postgres::Client) {
/// if let Some((query, spent)) = pglock_testkit::observe::last_statement(obs, 4242).await {
///     println!("{query}: {spent:?}");
/// }
/// # }
/// ```
///
/// # Panics
///
/// When the query fails.
pub async fn last_statement(obs: &Client, pid: i32) -> Option<(String, Duration)> {
    let row = obs
        .query_opt(
            "SELECT query, extract(epoch FROM state_change - query_start)::float8 \
             FROM pg_stat_activity WHERE pid = $1 AND state = 'idle'",
            &[&pid],
        )
        .await
        .expect("pg_stat_activity query")?;
    let secs: f64 = row.get(1);
    Some((row.get(0), Duration::from_secs_f64(secs.max(0.0))))
}

/// The chain a long report and a migration make: `report` read the table in a
/// transaction it keeps open (idle in transaction, holding `AccessShareLock`);
/// `migration` runs `ALTER TABLE` on it (waiting for `AccessExclusiveLock` behind
/// the report); `reader` reads it (waiting behind the migration's queued request,
/// though its lock does not conflict with the report's).
pub struct BlockingChain {
    /// The report's session, idle in transaction.
    pub report: Client,
    /// Its backend pid.
    pub report_pid: i32,
    /// The migration's `ALTER TABLE`: resolves with its session once it ran.
    pub migration: tokio::task::JoinHandle<Result<Client, tokio_postgres::Error>>,
    /// Its backend pid.
    pub migration_pid: i32,
    /// The reader's `SELECT`: resolves with its session once it ran.
    pub reader: tokio::task::JoinHandle<Result<Client, tokio_postgres::Error>>,
    /// Its backend pid.
    pub reader_pid: i32,
}

/// Creates `table` and arranges a [`BlockingChain`] on it, with sessions named
/// `report`, `migration` and `reader`; returns once the server shows the
/// migration blocked by the report and the reader by the migration.
///
/// # Panics
///
/// When a session cannot connect, a statement fails, or the chain does not form
/// within 10 s.
pub async fn blocking_chain(url: &str, obs: &Client, table: &str) -> BlockingChain {
    obs.batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .await
        .expect("the table is created");
    let (report, report_pid) = table_reader(url, "report", table).await;
    let background = |name: &'static str, sql: String| async move {
        let s = session(url, name).await;
        let pid = backend_pid(&s).await;
        let task = tokio::spawn(async move { s.batch_execute(&sql).await.map(|()| s) });
        (task, pid)
    };
    let (migration, migration_pid) =
        background("migration", format!("ALTER TABLE {table} ADD COLUMN y int")).await;
    wait_until_blocked(obs, migration_pid).await;
    let (reader, reader_pid) = background("reader", format!("SELECT count(*) FROM {table}")).await;
    wait_until_blocked(obs, reader_pid).await;
    assert_eq!(blocking_pids(obs, migration_pid).await, [report_pid]);
    assert_eq!(blocking_pids(obs, reader_pid).await, [migration_pid]);
    BlockingChain {
        report,
        report_pid,
        migration,
        migration_pid,
        reader,
        reader_pid,
    }
}

/// `pg_blocking_pids(pid)`, sorted.
pub async fn blocking_pids(obs: &Client, pid: i32) -> Vec<i32> {
    obs.query_one(
        "SELECT array(SELECT unnest(pg_blocking_pids($1)) ORDER BY 1)",
        &[&pid],
    )
    .await
    .expect("pg_blocking_pids")
    .get(0)
}
