//! The registry: aliases, errors that say what to do, and the rule that a
//! connection goes back to the pool only clean (checked on the server).

use std::time::Duration;

use pglock_runtime::{advisory, connection, connection_for, register, Config, ErrorKind, LockKey};
use pglock_tests::*;

async fn pid_of(alias: &str) -> i32 {
    connection_for(alias).await.unwrap().backend_pid()
}

#[tokio::test]
async fn clean_connections_are_reused() {
    setup();
    let alias = one_connection_alias("reuse");
    let first = pid_of(alias).await;
    // Give the background return check a moment, then check out again.
    let second = within(10, "checkout", pid_of(alias)).await;
    assert_eq!(first, second, "a clean connection is reused");
    let k = unique_key();
    advisory(k).using(alias).run(async {}).await.unwrap();
    assert_eq!(
        pid_of(alias).await,
        first,
        "still reused after a lock scope"
    );
}

#[tokio::test]
async fn dirty_connections_are_closed_not_reused() {
    setup();
    let obs = observer().await;
    let alias = one_connection_alias("dirty");
    // (An advisory lock left on the session is released by the return check's
    // reset, and the session kept: the next test but one.)
    let cases: [(&str, &str); 4] = [
        ("open transaction", "BEGIN"),
        ("failed transaction", "BEGIN; SELECT 1/0"),
        (
            "open transaction holding an advisory lock",
            "BEGIN; SELECT pg_advisory_lock(424242)",
        ),
        ("lock_timeout changed", "SET lock_timeout = '3s'"),
    ];
    for (what, sql) in cases {
        let c = connection_for(alias).await.unwrap();
        let pid = c.backend_pid();
        let _ = c.batch_execute(sql).await;
        drop(c);
        assert!(
            wait_until_gone(&obs, pid).await,
            "{what}: backend {pid} still open"
        );
        let next = pid_of(alias).await;
        assert_ne!(next, pid, "{what}: dirty connection reused");
        assert!(
            advisory_rows(&obs, LockKey::Int(424242)).await.is_empty(),
            "{what}"
        );
    }
}

#[tokio::test]
async fn scope_connection_is_the_lock_holder() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let outside = connection().await.unwrap().backend_pid();
    let inside = advisory(key)
        .run(async {
            let a = connection().await.unwrap().backend_pid();
            let b = connection().await.unwrap().backend_pid();
            assert_eq!(a, b, "the same scope connection every time");
            // A nested lock on the same alias uses the same session.
            let nested = advisory(key + 1)
                .run(async { connection().await.unwrap().backend_pid() })
                .await
                .unwrap();
            assert_eq!(nested, a);
            a
        })
        .await
        .unwrap();
    assert_eq!(holders(&obs, LockKey::Int(key)).await, Vec::<i32>::new());
    let _ = outside;
    // Seen from the server while held.
    advisory(key)
        .run(async {
            let pid = connection().await.unwrap().backend_pid();
            assert_eq!(holders(&obs, LockKey::Int(key)).await, vec![pid]);
        })
        .await
        .unwrap();
    let _ = inside;
    // A spawned task is not inside the scope: it gets another connection.
    advisory(key)
        .run(async {
            let mine = connection().await.unwrap().backend_pid();
            let theirs = tokio::spawn(async { connection().await.unwrap().backend_pid() })
                .await
                .unwrap();
            assert_ne!(mine, theirs);
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn configuration_errors_say_what_to_do() {
    setup();
    let err = connection_for("nope").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    assert_eq!(err.alias(), Some("nope"));
    assert!(
        err.to_string()
            .contains("pglock_runtime::register(\"nope\", config)"),
        "{err}"
    );

    let err = advisory(1).using("nope").acquire().await.unwrap_err();
    assert!(err.is_configuration());

    let err = register("default", Config::from_url(url()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("already registered"), "{err}");

    let err = Config::from_url("postgres://host:notaport/db").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    assert!(err.to_string().contains("invalid database URL"), "{err}");
}

#[tokio::test]
async fn connect_failures_are_typed_and_name_the_alias() {
    setup();
    // A database that does not exist.
    let mut cfg = Config::from_url(url()).unwrap().pg_config().clone();
    cfg.dbname("no_such_database");
    register("nodb", Config::new(cfg)).unwrap();
    let err = connection_for("nodb").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err:?}");
    assert!(err.to_string().contains("no_such_database"), "{err}");
    assert_eq!(err.alias(), Some("nodb"));

    // Nothing listening: fails within the connect timeout, as a pool error.
    let port = pglock_testkit::free_port();
    register(
        "closed",
        Config::from_url(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let err = within(10, "connect fails", connection_for("closed"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pool, "{err:?}");
    assert!(err.to_string().contains("`closed`"), "{err}");
}

#[tokio::test]
async fn checkout_wait_is_bounded() {
    setup();
    register(
        "tiny",
        Config::from_url(url())
            .unwrap()
            .max_size(1)
            .checkout_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let held = connection_for("tiny").await.unwrap();
    let err = within(10, "checkout times out", connection_for("tiny"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pool);
    assert!(err.to_string().contains("max_size"), "{err}");
    drop(held);
}

/// Connections outlive the runtime that opened them: each test has its own
/// runtime, and the pool is shared by all of them.
#[test]
fn pool_survives_the_runtime_that_filled_it() {
    setup();
    // Driven by pglock's runtime: the same session serves both runtimes.
    register(
        "runtimes",
        Config::from_url(url())
            .unwrap()
            .max_size(1)
            .drive_on_caller_runtime(false),
    )
    .unwrap();
    // Driven by each caller's runtime: the second runtime gets a working
    // connection of its own; the first runtime's closed with it.
    let affine = one_connection_alias("runtimes-affine");
    for (alias, same) in [("runtimes", true), (affine, false)] {
        let first = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(pid_of(alias));
        let second = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let c = connection_for(alias).await.unwrap();
            c.query_one("SELECT 1", &[])
                .await
                .expect("usable from a new runtime");
            c.backend_pid()
        });
        assert_eq!(first == second, same, "{alias}: {first} then {second}");
    }
}

/// A server that accepts the TCP connection but never answers: the checkout fails
/// within the connect timeout instead of hanging.
#[tokio::test]
async fn hung_server_fails_within_the_connect_timeout() {
    setup();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    register(
        "hung",
        Config::from_url(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .unwrap()
            .connect_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = within(10, "connect times out", connection_for("hung"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pool, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn wrong_password_is_a_configuration_error() {
    setup();
    let cluster = pglock_testkit::Cluster::start().expect("cluster");
    cluster
        .psql("CREATE ROLE pw LOGIN PASSWORD 'right'")
        .unwrap();
    cluster
        .prepend_hba("host all pw 127.0.0.1/32 scram-sha-256")
        .unwrap();
    let url = format!("postgres://pw:wrong@127.0.0.1:{}/postgres", cluster.port());
    register("wrong-password", Config::from_url(&url).unwrap()).unwrap();
    let err = connection_for("wrong-password").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err:?}");
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    // And the message does not leak the password.
    assert!(
        !err.to_string().contains("wrong@") && !format!("{err:?}").contains(":wrong"),
        "{err:?}"
    );
    let url = format!("postgres://pw:right@127.0.0.1:{}/postgres", cluster.port());
    register("right-password", Config::from_url(&url).unwrap()).unwrap();
    connection_for("right-password").await.unwrap();
}

#[tokio::test]
async fn huge_and_empty_keys_work() {
    setup();
    let obs = observer().await;
    for s in [String::new(), "k".repeat(1 << 20)] {
        let lock = advisory(s.as_str());
        let key = lock.key();
        let g = lock.acquire().await.unwrap();
        assert_eq!(holders(&obs, key).await.len(), 1);
        g.release().await.unwrap();
    }
}

#[tokio::test]
async fn a_huge_heartbeat_interval_is_clamped_not_a_panic_holding_the_lock() {
    setup();
    let obs = observer().await;
    register(
        "huge-heartbeat",
        Config::from_url(url())
            .unwrap()
            .heartbeat(Some(Duration::MAX))
            .max_size(1),
    )
    .unwrap();
    let key = unique_key();
    let g = advisory(key)
        .using("huge-heartbeat")
        .acquire()
        .await
        .unwrap();
    assert_eq!(holders(&obs, LockKey::Int(key)).await.len(), 1);
    g.release().await.unwrap();
    advisory(key)
        .using("huge-heartbeat")
        .run(async {})
        .await
        .unwrap();
    // The release is pipelined: its unlock may still be on the wire.
    assert_released(&obs, LockKey::Int(key)).await;
}

/// A metrics recorder whose gauge for held locks panics: a buggy exporter,
/// running inside pglock right after the grant.
struct PanicsOnHeld;

impl metrics::Recorder for PanicsOnHeld {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        assert_ne!(key.name(), "pglock_locks_held", "the exporter's bug");
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Issue 15.9: a panic in pglock's own code after the grant (here a metrics
/// recorder's, between the grant and the guard) must not send the session back
/// to the pool holding the lock: a connection dropped while its thread unwinds
/// is closed. Before, the lock stayed held by an idle pooled session for the life
/// of the process.
#[test]
fn a_panic_between_grant_and_guard_closes_the_session() {
    setup();
    register(
        "panic-after-grant",
        Config::from_url(url()).unwrap().max_size(1),
    )
    .unwrap();
    let key = unique_key();
    let lock = advisory(key).using("panic-after-grant");
    let panicked = metrics::with_local_recorder(&PanicsOnHeld, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lock.acquire_blocking()))
    });
    assert!(panicked.is_err(), "the recorder panicked inside acquire");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let obs = observer().await;
        within(10, "the lock is released with its session", async {
            while !holders(&obs, LockKey::Int(key)).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    });
    // The pool is usable, and the key free, for the next call.
    let g = lock.no_wait().acquire_blocking().unwrap();
    g.release().unwrap();
}

#[tokio::test]
async fn connect_errors_carry_their_cause() {
    // A loopback port nobody listens on: "connection refused", not just "error
    // connecting to server".
    let port = pglock_testkit::free_port();
    register(
        "refused",
        Config::from_url(&format!("postgres://u@127.0.0.1:{port}/db")).unwrap(),
    )
    .unwrap();
    let e = connection_for("refused").await.unwrap_err();
    assert!(e.to_string().contains("Connection refused"), "{e}");
    let e = Config::from_url("postgres://u@h:notaport/db").unwrap_err();
    assert!(
        e.to_string().contains("invalid value for option `port`"),
        "the URL error names the part: {e}"
    );
}

#[tokio::test]
async fn an_absurd_pool_size_is_clamped_not_a_panic() {
    setup();
    register(
        "huge-pool",
        Config::from_url(url()).unwrap().max_size(usize::MAX),
    )
    .unwrap();
    advisory(unique_key())
        .using("huge-pool")
        .run(async {})
        .await
        .unwrap();
}

/// Issue 15.10: a server that accepts and never answers must not leave a
/// connect task and its socket behind per failed checkout, on a current-thread
/// runtime (this test's) and from the blocking API.
#[tokio::test]
async fn failed_connects_to_a_silent_server_leave_no_socket_behind() {
    let silent = pglock_testkit::SilentServer::start().unwrap();
    register(
        "silent",
        Config::from_url(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            silent.port()
        ))
        .unwrap()
        .connect_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    for _ in 0..3 {
        let e = within(10, "checkout fails", connection_for("silent"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Pool, "{e}");
    }
    let blocking = tokio::task::spawn_blocking(|| {
        for _ in 0..2 {
            assert!(pglock_runtime::blocking::connection_for("silent").is_err());
        }
    });
    within(10, "blocking checkouts fail", blocking)
        .await
        .unwrap();
    assert!(silent.accepted() >= 5, "{} accepted", silent.accepted());
    // Give the client a moment to close what it gave up on.
    let mut open = silent.still_open();
    for _ in 0..40 {
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        open = silent.still_open();
    }
    assert_eq!(open, 0, "sockets left open by failed connects");
}

/// Issue 15.8: what user code changed on a connection it was handed does not
/// reach the next, unrelated checkout of the same session: role, settings,
/// `LISTEN`, temporary tables, SQL-level prepared statements.
#[tokio::test]
async fn a_used_connection_comes_back_reset() {
    setup();
    let obs = observer().await;
    let alias = one_connection_alias("contaminated");
    let other_role = format!("other_{}", unique_key().unsigned_abs());
    obs.batch_execute(&format!("CREATE ROLE {other_role}"))
        .await
        .unwrap();
    let c = connection_for(alias).await.unwrap();
    let pid = c.backend_pid();
    c.batch_execute(&format!(
        "SET ROLE {other_role}; SET search_path = nowhere; SET statement_timeout = '1s'; \
         LISTEN pglock_test_channel; CREATE TEMP TABLE leftover (x int); \
         PREPARE leftover_stmt AS SELECT 1"
    ))
    .await
    .unwrap();
    drop(c);
    // The same session comes back (one connection), clean.
    let next = within(10, "checkout", connection_for(alias)).await.unwrap();
    assert_eq!(next.backend_pid(), pid, "the session was reset, not closed");
    let row = next
        .query_one(
            "SELECT current_user::text = session_user::text, current_setting('search_path'), \
             current_setting('statement_timeout'), \
             (SELECT count(*) FROM pg_listening_channels()), \
             to_regclass('pg_temp.leftover') IS NULL, \
             (SELECT count(*) FROM pg_prepared_statements WHERE from_sql)",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "runs as the user it connected as");
    assert_eq!(row.get::<_, String>(1), "\"$user\", public");
    assert_eq!(row.get::<_, String>(2), "0");
    assert_eq!(row.get::<_, i64>(3), 0, "no LISTEN left");
    assert!(row.get::<_, bool>(4), "no temporary table left");
    assert_eq!(row.get::<_, i64>(5), 0, "no prepared statement left");
}

/// Issue 17.2 with 15.8: advisory locks user code took on a connection it was
/// handed are released by the return check's reset (`pg_advisory_unlock_all()`,
/// whose cost does not depend on the server's lock table), and the session is
/// kept. (Before, a `pg_locks` count found them and the session was closed.)
#[tokio::test]
async fn advisory_locks_left_on_a_used_connection_are_released_and_the_session_kept() {
    setup();
    let obs = observer().await;
    let alias = one_connection_alias("left-locks");
    let (a, b) = (unique_key(), unique_key());
    let c = connection_for(alias).await.unwrap();
    let pid = c.backend_pid();
    c.execute(
        "SELECT pg_advisory_lock($1), pg_advisory_lock($1), pg_advisory_lock_shared($2)",
        &[&a, &b],
    )
    .await
    .unwrap();
    assert_eq!(holders(&obs, LockKey::Int(a)).await, vec![pid]);
    drop(c);
    let next = within(10, "checkout", connection_for(alias)).await.unwrap();
    assert_eq!(next.backend_pid(), pid, "the session was reset, not closed");
    assert!(
        holders(&obs, LockKey::Int(a)).await.is_empty(),
        "a released"
    );
    assert!(
        holders(&obs, LockKey::Int(b)).await.is_empty(),
        "b released"
    );
    // Free for another session at once.
    let other = session(url(), "left-locks-other").await;
    let got: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&a])
        .await
        .unwrap()
        .get(0);
    assert!(got);
}
