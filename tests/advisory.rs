//! Advisory locks through the imperative API, observed from `pg_locks` and
//! `pg_stat_activity` on a separate plain connection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pglock_runtime::{advisory, advisory_with, ErrorKind, KeyHash, LockKey};
use pglock_tests::*;
use tokio::sync::Barrier;

/// Scenario 8: every kind of key appears in `pg_locks` with the classid / objid /
/// objsubid the key says it maps to, held by the guard's own backend.
#[tokio::test]
async fn keys_map_to_their_pg_locks_rows() {
    setup();
    let obs = observer().await;
    let salt = unique_key();
    let mut keys = vec![
        LockKey::Int(salt),
        LockKey::Int(-(salt.abs() | 1)),
        LockKey::Int(i64::MIN + (salt & 0xFFFF)),
        LockKey::Int(i64::MAX - (salt & 0xFFFF)),
        LockKey::Pair(salt as i32, (salt >> 32) as i32),
        LockKey::Pair(-((salt as i32) & 0x7FFF_FFFF) - 1, -7),
    ];
    for hash in [
        KeyHash::DjangoPglock,
        KeyHash::DjangoPglocks,
        KeyHash::DjangoPglocksV1,
        KeyHash::PostgresLock,
        KeyHash::Sqlx,
    ] {
        keys.push(advisory_with(format!("vector {salt} {}", hash.name()), hash).key());
    }
    for key in keys {
        let guard = advisory(key).acquire().await.expect("acquire");
        let pid = guard.connection().unwrap().backend_pid();
        let (c, o, s) = key.pg_locks_ids();
        let row = obs
            .query_one(
                "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'advisory' \
                 AND classid = $1 AND objid = $2 AND objsubid = $3",
                &[&c, &o, &s],
            )
            .await
            .unwrap_or_else(|e| panic!("no pg_locks row for {key}: {e}"));
        assert_eq!(row.get::<_, i32>(0), pid, "{key}");
        assert_eq!(row.get::<_, String>(1), "ExclusiveLock", "{key}");
        assert!(row.get::<_, bool>(2));
        // And the server's own decoding of the row agrees with the key.
        let decoded: i64 = obs
            .query_one(
                "SELECT (classid::int8 << 32) | objid::int8 FROM pg_locks \
                 WHERE locktype = 'advisory' AND objsubid = 1 AND classid = $1 AND objid = $2",
                &[&c, &o],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if let LockKey::Int(k) = key {
            assert_eq!(decoded, k, "server-side decoding of {key}");
        }
        guard.release().await.expect("release");
        assert_released(&obs, key).await;
    }
}

/// Scenario 1: exclusive vs exclusive.
#[tokio::test]
async fn exclusive_excludes_exclusive() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let a = advisory(key)
        .using(other())
        .acquire()
        .await
        .expect("A acquires");
    let a_pid = a.connection().unwrap().backend_pid();

    // B with timeout 0 fails at once, naming A.
    let err = advisory(key)
        .timeout(Duration::ZERO)
        .acquire()
        .await
        .expect_err("B must not acquire");
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert_eq!(err.key(), Some(LockKey::Int(key)));
    assert_eq!(
        err.holders().iter().map(|h| h.pid).collect::<Vec<_>>(),
        vec![a_pid]
    );
    assert!(
        err.to_string().contains(&format!("held by pid {a_pid}")),
        "{err}"
    );

    // B with a bounded wait fails with a lock timeout after waiting, naming A.
    let started = Instant::now();
    let err = advisory(key)
        .timeout(Duration::from_millis(300))
        .acquire()
        .await
        .expect_err("B must time out");
    assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(err.waited(), Some(Duration::from_millis(300)));
    assert_eq!(err.holders()[0].pid, a_pid);
    assert_eq!(holders(&obs, LockKey::Int(key)).await, vec![a_pid]);

    // B waiting without limit gets it once A releases.
    let b = tokio::spawn(async move {
        advisory(key)
            .acquire()
            .await
            .map(|g| (g.connection().unwrap().backend_pid(), g))
    });
    let waiter = wait_for_waiter(&obs, LockKey::Int(key)).await;
    a.release().await.expect("A releases");
    let (b_pid, b_guard) = within(10, "B acquires after A", b)
        .await
        .unwrap()
        .expect("B acquires");
    assert_eq!(b_pid, waiter);
    assert_eq!(holders(&obs, LockKey::Int(key)).await, vec![b_pid]);
    b_guard.release().await.unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

/// A bounded wait leaves nothing behind on the connection: its lock_timeout is
/// what it was, and no transaction is open.
#[tokio::test]
async fn bounded_wait_leaves_lock_timeout_alone() {
    setup();
    let key = unique_key();
    let a = advisory(key).acquire().await.unwrap();
    let holder = within(
        10,
        "lock scope",
        pglock_runtime::lock_timeout(Duration::from_secs(7)).scope(async {
            let err = advisory(key)
                .timeout(Duration::from_millis(100))
                .acquire()
                .await
                .unwrap_err();
            assert!(err.is_timeout(), "{err:?}");
            let db = pglock_runtime::connection().await.unwrap();
            let idle = simple_value(&db, "SELECT now() = statement_timestamp()")
                .await
                .as_deref()
                == Some("t");
            (show_lock_timeout(&db).await, idle)
        }),
    )
    .await
    .unwrap();
    assert_eq!(holder, ("7s".to_owned(), true));
    a.release().await.unwrap();
}

/// Scenario 2: shared + shared coexist; shared vs exclusive conflict both ways.
#[tokio::test]
async fn shared_locks_coexist_and_conflict_with_exclusive() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let s1 = advisory(key).shared().acquire().await.unwrap();
    let s2 = advisory(key)
        .shared()
        .timeout(Duration::ZERO)
        .acquire()
        .await
        .unwrap();
    let rows = advisory_rows(&obs, LockKey::Int(key)).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r.granted && r.mode == "ShareLock"),
        "{rows:?}"
    );

    let err = advisory(key)
        .timeout(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(err.is_busy());
    assert_eq!(err.holders().len(), 2, "{err}");
    s1.release().await.unwrap();
    s2.release().await.unwrap();

    let x = advisory(key).acquire().await.unwrap();
    let err = advisory(key)
        .shared()
        .timeout(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(err.is_busy());
    x.release().await.unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

/// Scenario 3: a database error inside the body, inside a transaction: the lock is
/// still released, and the transaction is usable afterwards.
#[tokio::test]
async fn database_error_in_body_inside_transaction_still_releases() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    pglock_runtime::lock_timeout(None)
        .scope(async {
            let db = pglock_runtime::connection().await.unwrap();
            db.batch_execute("BEGIN").await.unwrap();
            let body = advisory(key)
                .run(async {
                    let db = pglock_runtime::connection().await.unwrap();
                    assert_eq!(
                        holders(&obs, LockKey::Int(key)).await,
                        vec![db.backend_pid()]
                    );
                    db.batch_execute("SELECT 1/0").await
                })
                .await
                .expect("the scope itself succeeds");
            assert!(body.is_err(), "the body's own error is returned to it");
            assert!(
                holders(&obs, LockKey::Int(key)).await.is_empty(),
                "released"
            );
            // The caller's transaction is usable.
            db.query_one("SELECT 1", &[])
                .await
                .expect("transaction usable");
            db.batch_execute("COMMIT").await.unwrap();
        })
        .await
        .unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

/// Scenario 3, other shape: the body opens a transaction on the scope connection
/// itself and fails inside it.
#[tokio::test]
async fn body_that_leaves_a_failed_transaction_still_releases() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let r = advisory(key)
        .run(async {
            let db = pglock_runtime::connection().await.unwrap();
            db.batch_execute("BEGIN").await.unwrap();
            db.batch_execute("SELECT 1/0").await
        })
        .await
        .expect("the lock is released cleanly");
    assert!(r.is_err());
    assert_released(&obs, LockKey::Int(key)).await;
}

/// Scenario 4: a timeout inside an outer transaction (skip semantics: the caller
/// carries on) leaves that transaction usable and its lock_timeout unchanged.
#[tokio::test]
async fn timeout_inside_outer_transaction_leaves_it_usable() {
    setup();
    let key = unique_key();
    let a = advisory(key).acquire().await.unwrap();

    // Through the scope connection.
    pglock_runtime::lock_timeout(Duration::from_secs(9))
        .scope(async {
            let db = pglock_runtime::connection().await.unwrap();
            db.batch_execute("BEGIN; CREATE TEMP TABLE t4 (x int); INSERT INTO t4 VALUES (1)")
                .await
                .unwrap();
            let err = advisory(key)
                .timeout(Duration::from_millis(100))
                .run(async { unreachable!() })
                .await
                .unwrap_err();
            assert!(err.is_timeout());
            let err = advisory(key)
                .timeout(Duration::ZERO)
                .acquire()
                .await
                .unwrap_err();
            assert!(err.is_busy());
            let n: i64 = query_value(&db, "SELECT count(*) FROM t4").await;
            assert_eq!(n, 1);
            assert_eq!(show_lock_timeout(&db).await, "9s");
            db.batch_execute("ROLLBACK").await.unwrap();
        })
        .await
        .unwrap();

    // Through a caller's own transaction.
    let mut client = connect(url()).await;
    client
        .batch_execute("SET lock_timeout = '4s'")
        .await
        .unwrap();
    let txn = client.transaction().await.unwrap();
    txn.batch_execute("CREATE TEMP TABLE t4b (x int); INSERT INTO t4b VALUES (1)")
        .await
        .unwrap();
    let err = advisory(key)
        .xact()
        .timeout(Duration::from_millis(100))
        .acquire_in(&txn)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let n: i64 = query_value(txn.client(), "SELECT count(*) FROM t4b").await;
    assert_eq!(n, 1);
    let lt = show_lock_timeout(txn.client()).await;
    assert_eq!(lt, "4s");
    txn.commit().await.unwrap();
    a.release().await.unwrap();
}

/// Scenario 6: a transaction-level lock is held until commit or rollback, cannot be
/// released by hand, and inside an existing transaction joins it.
#[tokio::test]
async fn xact_lock_lives_and_dies_with_its_transaction() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let k = LockKey::Int(key);

    // pglock opens the transaction; commit ends it.
    let g = advisory(key).xact().acquire().await.unwrap();
    let pid = g.connection().unwrap().backend_pid();
    assert_eq!(holders(&obs, k).await, vec![pid]);
    g.client().batch_execute("SELECT 1").await.unwrap();
    assert_eq!(holders(&obs, k).await, vec![pid], "held across statements");
    g.commit().await.unwrap();
    assert!(holders(&obs, k).await.is_empty());

    // Rollback ends it too.
    let g = advisory(key).xact().acquire().await.unwrap();
    g.rollback().await.unwrap();
    assert!(holders(&obs, k).await.is_empty());

    // Manual release is rejected, and the lock still ends with its transaction.
    let g = advisory(key).xact().acquire().await.unwrap();
    let err = g.release().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert_released(&obs, k).await;

    // In the caller's transaction: held until that transaction ends.
    let mut client = connect(url()).await;
    let txn = client.transaction().await.unwrap();
    let g = advisory(key).xact().acquire_in(&txn).await.unwrap();
    assert_eq!(g.release().await.unwrap_err().kind(), ErrorKind::Usage);
    assert_eq!(
        holders(&obs, k).await.len(),
        1,
        "still held in the transaction"
    );
    txn.commit().await.unwrap();
    assert!(holders(&obs, k).await.is_empty());

    // On a bare client an xact lock is refused.
    let err = advisory(key).xact().acquire_on(&client).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
}

/// Scenario 12: releasing a lock that was lost is reported, not silent.
#[tokio::test]
async fn release_of_a_lost_lock_is_reported() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let g = advisory(key).acquire().await.unwrap();
    g.client()
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    let err = g.release().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LostBeforeRelease);
    assert!(err.is_lost());
    assert_released(&obs, LockKey::Int(key)).await;
}

/// Scenario 11: one lock used concurrently from many tasks: no shared per-call
/// state, mutual exclusion holds, nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_one_lock() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let inside = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (inside, runs, barrier) = (inside.clone(), runs.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..5 {
                    advisory(key)
                        .run(async {
                            assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            inside.store(false, Ordering::SeqCst);
                            runs.fetch_add(1, Ordering::SeqCst);
                        })
                        .await
                        .expect("run");
                }
            })
        })
        .collect();
    for t in tasks {
        within(60, "tasks finish", t).await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 80);
    assert_released(&obs, LockKey::Int(key)).await;
}

/// Keys from a caller's own client (postgres-lock's use), two-int keys included.
#[tokio::test]
async fn locks_on_a_callers_client() {
    setup();
    let obs = observer().await;
    let client = connect(url()).await;
    let pid = backend_pid(&client).await;
    let key = LockKey::Pair(unique_key() as i32, -3);
    let g = advisory(key).acquire_on(&client).await.unwrap();
    assert_eq!(holders(&obs, key).await, vec![pid]);
    let err = advisory(key)
        .timeout(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(err.holders()[0].pid, pid);
    g.release().await.unwrap();
    assert!(holders(&obs, key).await.is_empty());

    // Dropping the guard is a backstop that still unlocks.
    let g = advisory(key).acquire_on(&client).await.unwrap();
    drop(g);
    assert_released(&obs, key).await;
}

/// Dropping a guard without release() still releases the lock (in the background),
/// and the connection goes back to the pool clean.
#[tokio::test]
async fn dropped_guard_releases() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let g = advisory(key).acquire().await.unwrap();
    drop(g);
    assert_released(&obs, LockKey::Int(key)).await;
    let g = advisory(key).xact().acquire().await.unwrap();
    drop(g);
    assert_released(&obs, LockKey::Int(key)).await;
}

/// Dropping an acquisition while the server waits cancels the server-side wait and
/// leaves no lock behind, even though the holder releases right after.
#[tokio::test]
async fn dropped_acquire_cancels_the_server_wait() {
    setup();
    let obs = observer().await;
    let key = unique_key();
    let a = advisory(key).using(other()).acquire().await.unwrap();
    let waiting = tokio::spawn(async move { advisory(key).acquire().await.map(drop) });
    let waiter = wait_for_waiter(&obs, LockKey::Int(key)).await;
    waiting.abort();
    let _ = waiting.await;
    // The waiter's row disappears without the holder releasing.
    for _ in 0..500 {
        if advisory_rows(&obs, LockKey::Int(key))
            .await
            .iter()
            .all(|r| r.pid != waiter)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rows = advisory_rows(&obs, LockKey::Int(key)).await;
    assert!(
        rows.iter().all(|r| r.pid != waiter),
        "wait still there: {rows:?}"
    );
    a.release().await.unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

/// A deadlock between two sessions is reported as a deadlock, not a timeout.
#[tokio::test]
async fn deadlock_is_its_own_error_kind() {
    setup();
    let (k1, k2) = (unique_key(), unique_key());
    let a = advisory(k1).acquire().await.unwrap();
    let b = advisory(k2).acquire().await.unwrap();
    let a_client = a.connection().unwrap().clone();
    let b_client = b.connection().unwrap().clone();
    let t1 = tokio::spawn(async move { advisory(k2).acquire_on(&a_client).await.map(|g| g.key()) });
    let t2 = tokio::spawn(async move { advisory(k1).acquire_on(&b_client).await.map(|g| g.key()) });
    // The server picks one victim; the survivor waits until the victim's first lock
    // goes, so release both first locks once the victim has been told.
    let mut t1 = t1;
    let mut t2 = t2;
    let first = within(20, "deadlock detected", async {
        tokio::select! {
            r = &mut t1 => (1, r.unwrap()),
            r = &mut t2 => (2, r.unwrap()),
        }
    })
    .await;
    assert_eq!(
        first.1.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::Deadlock),
        "{first:?}"
    );
    let victim_guard = if first.0 == 1 { a } else { b };
    victim_guard.release().await.unwrap();
    let survivor = within(20, "survivor acquires", async {
        if first.0 == 1 {
            t2.await
        } else {
            t1.await
        }
    })
    .await
    .unwrap();
    assert!(survivor.is_ok(), "{survivor:?}");
}

/// Every combination of mode × level × wait: the lock shows up in `pg_locks` with
/// the right mode on the guard's backend, conflicts as PostgreSQL says it should,
/// and is gone after release / commit.
#[tokio::test]
async fn mode_level_wait_matrix() {
    setup();
    let obs = observer().await;
    for shared in [false, true] {
        for xact in [false, true] {
            for wait in [None, Some(Duration::ZERO), Some(Duration::from_millis(200))] {
                let key = unique_key();
                let k = LockKey::Int(key);
                let mut lock = advisory(key);
                if shared {
                    lock = lock.shared();
                }
                if xact {
                    lock = lock.xact();
                }
                if let Some(w) = wait {
                    lock = lock.timeout(w);
                }
                let what = format!("shared={shared} xact={xact} wait={wait:?}");
                let g = lock
                    .acquire()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let pid = g.connection().unwrap().backend_pid();
                let rows = advisory_rows(&obs, k).await;
                let mode = if shared { "ShareLock" } else { "ExclusiveLock" };
                assert_eq!(
                    rows,
                    vec![AdvisoryRow {
                        pid,
                        mode: mode.into(),
                        granted: true
                    }],
                    "{what}"
                );
                // An exclusive attempt always conflicts; a shared one only with exclusive.
                let err = advisory(key).no_wait().acquire().await.unwrap_err();
                assert!(err.is_busy(), "{what}");
                let other_shared = advisory(key).shared().no_wait().acquire().await;
                assert_eq!(other_shared.is_ok(), shared, "{what}");
                if let Ok(o) = other_shared {
                    o.release().await.unwrap();
                }
                if xact {
                    g.commit().await.unwrap();
                } else {
                    g.release().await.unwrap();
                }
                assert_released(&obs, k).await;
            }
        }
    }
}

/// Scenario 7 (imperative half): a busy no-wait scope does not run its body, and the
/// error names the holder.
#[tokio::test]
async fn busy_scope_does_not_run_its_body() {
    setup();
    let key = unique_key();
    let g = advisory(key).acquire().await.unwrap();
    let pid = g.connection().unwrap().backend_pid();
    let ran = AtomicBool::new(false);
    let err = advisory(key)
        .no_wait()
        .run(async { ran.store(true, Ordering::SeqCst) })
        .await
        .unwrap_err();
    assert!(!ran.load(Ordering::SeqCst), "the body must not run");
    assert!(err.is_busy());
    assert!(
        err.to_string().contains(&format!("held by pid {pid}")),
        "{err}"
    );
    g.release().await.unwrap();
}

/// Connection frugality: 100 tasks of this process waiting for the same exclusive
/// key queue in the process; only the head waits on the server. Checked on the
/// server: the alias's sessions and the waiters in `pg_locks`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_tasks_queue_in_the_process() {
    setup();
    pglock_runtime::register(
        "frugal",
        pglock_runtime::Config::from_url(url())
            .unwrap()
            .max_size(120),
    )
    .unwrap();
    let obs = observer().await;
    let key = unique_key();
    let k = LockKey::Int(key);
    let holder = advisory(key).using(other()).acquire().await.unwrap();
    let inside = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (inside, runs) = (inside.clone(), runs.clone());
            tokio::spawn(async move {
                advisory(key)
                    .using("frugal")
                    .run(async {
                        assert!(!inside.swap(true, Ordering::SeqCst));
                        inside.store(false, Ordering::SeqCst);
                        runs.fetch_add(1, Ordering::SeqCst);
                    })
                    .await
            })
        })
        .collect();
    wait_for_waiter(&obs, k).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = advisory_rows(&obs, k).await;
    assert_eq!(
        rows.iter().filter(|r| !r.granted).count(),
        1,
        "one waiter on the server: {rows:?}"
    );
    let open = pglock_runtime::pool_status("frugal").unwrap().open;
    assert!(open <= 2, "{open} server connections for 100 waiting tasks");
    holder.release().await.unwrap();
    for t in tasks {
        within(60, "queued tasks", t).await.unwrap().unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 100);
    let open = pglock_runtime::pool_status("frugal").unwrap().open;
    assert!(open <= 2, "{open} connections after the queue drained");
    assert_released(&obs, k).await;
}

/// A bounded wait counts the time spent queued behind other tasks of this process.
#[tokio::test]
async fn bounded_waits_include_the_in_process_queue() {
    setup();
    let key = unique_key();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let head = tokio::spawn(async move {
        advisory(key)
            .run(async {
                let _ = rx.await;
            })
            .await
    });
    let obs = observer().await;
    while holders(&obs, LockKey::Int(key)).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(async move {
                advisory(key)
                    .timeout(Duration::from_millis(300))
                    .acquire()
                    .await
                    .map(drop)
            })
        })
        .collect();
    for w in waiters {
        let err = within(10, "bounded waiter", w).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err:?}");
        assert_eq!(err.holders().len(), 1, "{err}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    tx.send(()).unwrap();
    head.await.unwrap().unwrap();
}

/// Pipelined release (the default): the call returns before the unlock's reply
/// and the connection goes straight back to the pool; the lock is still released,
/// mutual exclusion holds, a no-wait try right after the call finds the key free,
/// and a lock lost before release is still the call's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_release() {
    setup();
    let mut pg: tokio_postgres::Config = url().parse().unwrap();
    pg.application_name("pglock-pipelined-test");
    pglock_runtime::register("pipelined", pglock_runtime::Config::new(pg)).unwrap();
    let obs = observer().await;
    let key = unique_key();
    advisory(key)
        .using("pipelined")
        .run(async {})
        .await
        .unwrap();
    assert_released(&obs, LockKey::Int(key)).await;

    // One call after another: each finds the previous call's connection back in
    // the pool (the unlock ahead of it on the wire), so one session serves them
    // all; and a no-wait try right after a call never finds the key busy.
    for i in 0..200 {
        advisory(key)
            .using("pipelined")
            .run(async {})
            .await
            .unwrap();
        let other =
            tokio::spawn(async move { advisory(key).using("pipelined").no_wait().acquire().await });
        let g = other.await.unwrap().expect("free once the call returned");
        if i % 50 == 0 {
            // (Not `g.connection()`: that would hand the session to user code,
            // and its return would then wait for the server-side check.)
            assert_eq!(holders(&obs, LockKey::Int(key)).await.len(), 1);
        }
        g.release().await.unwrap();
    }
    let sessions: i64 = obs
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pglock-pipelined-test'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sessions <= 2, "{sessions} sessions for sequential calls");

    let inside = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let inside = inside.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    advisory(key)
                        .using("pipelined")
                        .run(async {
                            assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            inside.store(false, Ordering::SeqCst);
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        within(60, "pipelined tasks", t).await.unwrap();
    }
    assert_released(&obs, LockKey::Int(key)).await;

    // The body had the connection: the release waits, and a lock lost before it
    // is the call's error.
    let err = advisory(key)
        .using("pipelined")
        .run(async {
            let db = pglock_runtime::connection_for("pipelined").await.unwrap();
            db.batch_execute("SELECT pg_advisory_unlock_all()")
                .await
                .unwrap();
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LostBeforeRelease);

    // (A session that ends while the body runs: `reliability.rs`, which may
    // terminate backends.)
}

/// `Config::pipelined_release(false)`: every release waits for its reply.
#[tokio::test]
async fn awaited_release() {
    setup();
    pglock_runtime::register(
        "awaited",
        pglock_runtime::Config::from_url(url())
            .unwrap()
            .pipelined_release(false),
    )
    .unwrap();
    let obs = observer().await;
    let key = unique_key();
    // Awaited: released on the server by the time the call returns, every time
    // (a pipelined release would now and then still be on the wire).
    for _ in 0..50 {
        advisory(key).using("awaited").run(async {}).await.unwrap();
        assert!(holders(&obs, LockKey::Int(key)).await.is_empty());
    }
}

/// Issue 15.13: a bounded wait honours its bound as a whole, also when the pool
/// is full: behind a holder of the same key in this process (the holder
/// look-up must not wait for a connection), and for another key (the wait for
/// a connection counts against the bound).
#[tokio::test]
async fn a_bounded_wait_with_a_full_pool_honours_its_bound() {
    setup();
    let alias = one_connection_alias("full-pool-bound");
    let key = unique_key();
    let holder = advisory(key).using(alias).acquire().await.unwrap();
    for other in [key, unique_key()] {
        let started = Instant::now();
        let e = within(
            20,
            "bounded acquisition",
            advisory(other)
                .timeout(Duration::from_secs(1))
                .using(alias)
                .run(async {}),
        )
        .await
        .unwrap_err();
        let took = started.elapsed();
        assert_eq!(e.kind(), ErrorKind::LockTimeout, "{e}");
        assert!(
            took < Duration::from_millis(1800),
            "timeout(1s) took {took:?}: {e}"
        );
    }
    holder.release().await.unwrap();
}
