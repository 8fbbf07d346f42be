//! Behind a real PgBouncer: in transaction pooling, session locks silently stop
//! excluding, so pglock detects it and refuses them; transaction-level locks work;
//! session pooling works normally. Observed directly on the cluster.

use std::time::Duration;

use pglock_runtime::{advisory, connection_for, register, Config, ErrorKind, LockKey};
use pglock_tests::{backend_pid, holders, session, unique_key, within};

fn cluster() -> &'static pglock_testkit::Cluster {
    // Tests here need a server they started, with a pooler in front of it.
    pglock_testkit::shared_cluster()
}

#[tokio::test]
async fn transaction_pooling_is_detected_and_session_locks_refused() {
    let pg = cluster();
    let bouncer = pg.start_pgbouncer("transaction", 2).expect("pgbouncer");
    register(
        "txpool",
        Config::from_url(&bouncer.url()).unwrap().max_size(1),
    )
    .unwrap();
    let obs = session(&pg.url(), "observer").await;
    let key = unique_key();

    let c = connection_for("txpool").await.unwrap();
    let opened_on = c.backend_pid();
    drop(c);
    // Pin the server session pglock's connection was opened on with another
    // client's open transaction, so pglock's next statement runs elsewhere.
    // A pinner that got another server session keeps it until one gets that one
    // (the pooler hands out the most recently used server first, which need not
    // be it), then lets the others go.
    let mut pinned = None;
    let mut others = Vec::new();
    for _ in 0..2 {
        let x = session(&bouncer.url(), "pinner").await;
        x.batch_execute("BEGIN").await.unwrap();
        let pid = backend_pid(&x).await;
        if pid == opened_on {
            pinned = Some(x);
            break;
        }
        others.push(x);
    }
    for x in others {
        x.batch_execute("ROLLBACK").await.unwrap();
    }
    let pinned = pinned.expect("could pin the first server session");

    let err = within(10, "refused", advisory(key).using("txpool").acquire())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pooler, "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("xact") && msg.contains("transaction_pooling"),
        "{msg}"
    );
    let _ = msg;
    assert!(
        holders(&obs, LockKey::Int(key)).await.is_empty(),
        "no lock taken anywhere"
    );
    // Once detected, session locks are refused up front on that connection.
    let err = advisory(key)
        .using("txpool")
        .no_wait()
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pooler);
    pinned.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn xact_locks_work_behind_transaction_pooling() {
    let pg = cluster();
    let bouncer = pg.start_pgbouncer("transaction", 3).expect("pgbouncer");
    register(
        "txpool-declared",
        Config::from_url(&bouncer.url())
            .unwrap()
            .transaction_pooling(true),
    )
    .unwrap();
    let obs = session(&pg.url(), "observer").await;
    let key = unique_key();
    let k = LockKey::Int(key);

    // Session locks are refused at once when the pooler is declared.
    let err = advisory(key)
        .using("txpool-declared")
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pooler);

    let lock = advisory(key).xact().using("txpool-declared");
    let g = lock.acquire().await.unwrap();
    let held_by = holders(&obs, k).await;
    assert_eq!(held_by.len(), 1, "held on the server");
    // It excludes others: a direct session, and another pooled client.
    let direct = session(&pg.url(), "direct").await;
    let got: bool = direct
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(!got);
    let err = lock.clone().no_wait().acquire().await.unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    // Statements in the guard's transaction stay on the holding session.
    for _ in 0..5 {
        let pid = backend_pid(g.client()).await;
        assert_eq!(vec![pid], held_by);
    }
    g.commit().await.unwrap();
    assert!(holders(&obs, k).await.is_empty());

    // Scopes with xact locks run their bodies in the lock's transaction.
    for _ in 0..3 {
        let pids = lock
            .run(async {
                let db = connection_for("txpool-declared").await.unwrap();
                let pid = backend_pid(&db).await;
                (pid, holders(&obs, k).await)
            })
            .await
            .unwrap();
        assert_eq!(vec![pids.0], pids.1);
    }
    // And mutual exclusion holds across concurrent pooled clients.
    let inside = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (lock, inside) = (lock.clone(), inside.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    lock.run(async {
                        assert!(!inside.swap(true, std::sync::atomic::Ordering::SeqCst));
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        inside.store(false, std::sync::atomic::Ordering::SeqCst);
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        within(60, "pooled tasks", t).await.unwrap();
    }
    assert!(holders(&obs, k).await.is_empty());
}

#[tokio::test]
async fn session_pooling_works_normally() {
    let pg = cluster();
    let bouncer = pg.start_pgbouncer("session", 3).expect("pgbouncer");
    register("sespool", Config::from_url(&bouncer.url()).unwrap()).unwrap();
    let obs = session(&pg.url(), "observer").await;
    let key = unique_key();
    let g = advisory(key).using("sespool").acquire().await.unwrap();
    let pid = backend_pid(g.client()).await;
    assert_eq!(holders(&obs, LockKey::Int(key)).await, vec![pid]);
    let err = advisory(key)
        .using("sespool")
        .no_wait()
        .acquire()
        .await
        .unwrap_err();
    assert!(err.is_busy());
    g.release().await.unwrap();
    assert!(holders(&obs, LockKey::Int(key)).await.is_empty());
}
