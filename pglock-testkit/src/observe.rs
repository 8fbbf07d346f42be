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

/// The backend pid of a session.
pub async fn backend_pid(client: &Client) -> i32 {
    query_value(client, "SELECT pg_backend_pid()").await
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
