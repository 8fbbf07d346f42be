//! `lock_timeout` scopes (REFERENCE.md §7 scenario 5), read back with
//! `SHOW lock_timeout` from the server.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use pglock_runtime::{advisory, connection, lock_timeout, ErrorKind, LockKey};
use pglock_tests::*;

async fn show() -> String {
    show_lock_timeout(&connection().await.unwrap()).await
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test]
async fn nested_scopes_restore_in_order() {
    setup();
    let base = show().await;
    lock_timeout(secs(1))
        .scope(async {
            assert_eq!(show().await, "1s");
            lock_timeout(secs(2))
                .scope(async {
                    assert_eq!(show().await, "2s");
                    lock_timeout(None)
                        .scope(async { assert_eq!(show().await, "0") })
                        .await
                        .unwrap();
                    assert_eq!(show().await, "2s");
                    lock_timeout(Duration::from_millis(1500))
                        .scope(async { assert_eq!(show().await, "1500ms") })
                        .await
                        .unwrap();
                    assert_eq!(show().await, "2s");
                })
                .await
                .unwrap();
            assert_eq!(show().await, "1s");
        })
        .await
        .unwrap();
    assert_eq!(show().await, base);
}

#[tokio::test]
async fn scopes_inside_transactions_are_local_and_survive_rollbacks() {
    setup();
    lock_timeout(secs(1))
        .scope(async {
            let db = connection().await.unwrap();
            // A scope inside a transaction behaves like SET LOCAL.
            db.batch_execute("BEGIN").await.unwrap();
            lock_timeout(secs(2))
                .scope(async { assert_eq!(show().await, "2s") })
                .await
                .unwrap();
            assert_eq!(show().await, "1s");
            db.batch_execute("ROLLBACK").await.unwrap();
            assert_eq!(show().await, "1s");

            // The transaction ends (rolled back) inside the inner scope.
            db.batch_execute("BEGIN").await.unwrap();
            lock_timeout(secs(3))
                .scope(async {
                    assert_eq!(show().await, "3s");
                    db.batch_execute("ROLLBACK").await.unwrap();
                    assert_eq!(show().await, "1s");
                })
                .await
                .unwrap();
            assert_eq!(show().await, "1s");

            // The transaction fails inside the inner scope.
            db.batch_execute("BEGIN").await.unwrap();
            lock_timeout(secs(4))
                .scope(async {
                    assert!(db.batch_execute("SELECT 1/0").await.is_err());
                })
                .await
                .expect("restoring a local value in a failed transaction is not an error");
            db.batch_execute("ROLLBACK").await.unwrap();
            assert_eq!(show().await, "1s");

            // A session-level scope whose body opens and commits a transaction.
            lock_timeout(secs(5))
                .scope(async {
                    db.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
                    assert_eq!(show().await, "5s");
                })
                .await
                .unwrap();
            assert_eq!(show().await, "1s");
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn restored_after_errors_and_panics() {
    setup();
    lock_timeout(secs(5))
        .scope(async {
            let r: Result<(), &str> = lock_timeout(secs(1))
                .scope(async { Err("body failed") })
                .await
                .unwrap();
            assert!(r.is_err());
            assert_eq!(show().await, "5s");

            let caught = AssertUnwindSafe(lock_timeout(secs(1)).scope(async {
                assert_eq!(show().await, "1s");
                panic!("body panicked");
            }))
            .catch_unwind()
            .await;
            assert!(caught.is_err());
            assert_eq!(show().await, "5s");
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn zero_and_out_of_range_are_rejected() {
    setup();
    let err = lock_timeout(Duration::ZERO)
        .scope(async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    assert!(err.to_string().contains("`None`"), "{err}");
    let err = lock_timeout(secs(40 * 24 * 3600))
        .scope(async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
    let err = advisory(1)
        .timeout(secs(40 * 24 * 3600))
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
}

/// The scope's limit applies to the statements of the body and to locks taken with
/// the default wait.
#[tokio::test]
async fn limit_applies_to_statements_and_default_waits() {
    setup();
    let key = unique_key();
    let holder = advisory(key).acquire().await.unwrap();
    let table = format!("lt_{}", key.unsigned_abs());
    let obs = observer().await;
    obs.batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .await
        .unwrap();
    let mut other = connect(url()).await;
    let txn = other.transaction().await.unwrap();
    txn.batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .await
        .unwrap();

    lock_timeout(Duration::from_millis(200))
        .scope(async {
            let err = advisory(key).acquire().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::LockTimeout);
            let db = connection().await.unwrap();
            let err = db
                .query(&format!("SELECT * FROM {table}"), &[])
                .await
                .unwrap_err();
            assert_eq!(
                pglock_runtime::Error::from(err).kind(),
                ErrorKind::LockTimeout
            );
            // An explicit wait_forever overrides the scope for the lock statement.
            let forever = advisory(key).wait_forever();
            let r = tokio::time::timeout(Duration::from_millis(600), forever.acquire()).await;
            assert!(r.is_err(), "still waiting after 600 ms");
        })
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    holder.release().await.unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

/// Connections come back from scopes with the lock_timeout they started with.
#[tokio::test]
async fn pooled_connections_come_back_with_their_original_lock_timeout() {
    setup();
    for _ in 0..5 {
        lock_timeout(secs(3))
            .scope(async { show().await })
            .await
            .unwrap();
    }
    let conns: Vec<_> = futures_util::future::join_all((0..8).map(|_| connection())).await;
    for c in conns {
        let c = c.unwrap();
        assert_eq!(show_lock_timeout(&c).await, "0", "pid {}", c.backend_pid());
    }
}

/// Issue 15.14: a wait queued in the process behind another task holding the
/// same key honours the `lock_timeout` the session has from its role (or the
/// server), as the wait on the server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_wait_honours_the_roles_lock_timeout() {
    setup();
    let obs = observer().await;
    let role = format!("lt_{}", unique_key().unsigned_abs());
    obs.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; ALTER ROLE {role} SET lock_timeout = '400ms'"
    ))
    .await
    .unwrap();
    let mut cfg: tokio_postgres::Config = url().parse().unwrap();
    cfg.user(&role);
    let alias: &'static str = Box::leak(role.into_boxed_str());
    pglock_runtime::register(alias, pglock_runtime::Config::new(cfg)).unwrap();
    let key = unique_key();
    let holder = advisory(key).using(alias).acquire().await.unwrap();
    let started = std::time::Instant::now();
    let e = within(
        10,
        "the queued wait gives up",
        advisory(key).using(alias).run(async {}),
    )
    .await
    .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(started.elapsed() < secs(2), "{:?}", started.elapsed());
    holder.release().await.unwrap();
}

/// Issue 16.5: a statement of a `#[lock_timeout]` body that hits the limit, its
/// error converted by `?`, names the relation it waited for and the session
/// that blocked it (PostgreSQL's own error names neither).
#[lock_timeout("2s")]
async fn read_table(table: &str) -> Result<(), pglock_runtime::Error> {
    let db = connection().await?;
    db.query(&format!("SELECT * FROM {table}"), &[]).await?;
    Ok(())
}

#[tokio::test]
async fn a_body_statement_that_times_out_names_its_relation_and_blocker() {
    setup();
    let obs = observer().await;
    let table = fresh_table(&obs, "lt_body").await;
    let (locker, pid) = table_locker(url(), "lt-locker", &table, "ACCESS EXCLUSIVE").await;
    assert_eq!(pid, backend_pid(&locker).await);

    let e = read_table(&table).await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(
        e.relation(),
        Some(format!("public.{table}").as_str()),
        "{e}"
    );
    let blockers: Vec<(i32, &str, &str)> = e
        .holders()
        .iter()
        .map(|h| (h.pid, h.mode.as_str(), h.application_name.as_str()))
        .collect();
    assert_eq!(blockers, [(pid, "AccessExclusiveLock", "lt-locker")], "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("AccessShareLock on relation `public.{table}`"))
            && text.contains(&format!("held by pid {pid} (application_name `lt-locker`)")),
        "{text}"
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
}

/// The same from synchronous code, in a transaction block the timeout aborts
/// (the look-ups never use the scope's session), and for a row lock.
#[test]
fn a_blocking_body_statement_that_times_out_names_its_relation_and_blocker() {
    setup();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (obs, table, locker, pid) = rt.block_on(async {
        let obs = observer().await;
        let table = fresh_table(&obs, "lt_row").await;
        let locker = session(url(), "lt-row-locker").await;
        let pid = backend_pid(&locker).await;
        locker
            .batch_execute(&format!("BEGIN; SELECT * FROM {table} FOR UPDATE"))
            .await
            .unwrap();
        (obs, table, locker, pid)
    });
    let e = lock_timeout(Duration::from_millis(1500))
        .scope_blocking(|| {
            let db = pglock_runtime::blocking::connection()?;
            db.batch_execute("BEGIN")?;
            let r = db.execute(&format!("UPDATE {table} SET x = 2"), &[]);
            db.batch_execute("ROLLBACK")?;
            r.map(drop)
        })
        .unwrap()
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(
        e.relation(),
        Some(format!("public.{table}").as_str()),
        "{e}"
    );
    let pids: Vec<i32> = e.holders().iter().map(|h| h.pid).collect();
    assert_eq!(pids, [pid], "{e}");
    assert!(
        e.to_string()
            .contains(&format!("(a row of `public.{table}`)")),
        "{e}"
    );
    rt.block_on(async {
        locker.batch_execute("ROLLBACK").await.unwrap();
        drop(obs);
    });
}

/// The looks at a blocking body's lock waits run on pglock's runtime and take a
/// connection of the alias's own pool only when one is free: they never open a
/// pool of their own beyond the alias's `max_size` (they did, keyed by pglock's
/// runtime as if it were a caller's).
#[test]
fn looks_at_a_blocking_body_stay_within_max_size() {
    setup();
    let alias = one_connection_alias("lt_looks_one");
    let open = lock_timeout(Duration::from_millis(150))
        .using(alias)
        .scope_blocking(|| {
            // Several looks are due meanwhile (every 50 ms).
            std::thread::sleep(Duration::from_millis(600));
            pglock_runtime::pool_status(alias).map(|s| s.open)
        })
        .unwrap();
    assert_eq!(open, Some(1));
}
