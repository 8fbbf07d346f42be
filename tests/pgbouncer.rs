//! Behind a real PgBouncer: in transaction pooling, session locks silently stop
//! excluding, so pglock detects a pooler when it connects and refuses them unless
//! the pool mode is declared; transaction-level locks work, declared or not;
//! session pooling works once declared; a plain TCP forwarder is no pooler.
//! Observed directly on the cluster.

use std::time::Duration;

use pglock_runtime::{advisory, connection_for, register, Config, ErrorKind, LockKey, Pooling};
use pglock_tests::{backend_pid, holders, session, unique_key, within};

fn cluster() -> &'static pglock_testkit::Cluster {
    // Tests here need a server they started, with a pooler in front of it.
    pglock_testkit::shared_cluster()
}

/// A transaction pooler wrongly declared to pool by session: the session guard
/// in the lock statement still catches the statement that lands on another
/// server session.
#[tokio::test]
async fn transaction_pooling_is_caught_and_session_locks_refused() {
    let pg = cluster();
    let bouncer = pg.start_pgbouncer("transaction", 2).expect("pgbouncer");
    register(
        "txpool",
        Config::from_url(&bouncer.url())
            .unwrap()
            .max_size(1)
            .pooling(Pooling::Session),
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

/// The message of a session lock refused behind a pooler whose mode pglock
/// cannot tell: it says how to declare either mode.
fn assert_says_how_to_declare(err: &pglock_runtime::Error) {
    assert_eq!(err.kind(), ErrorKind::Pooler, "{err:?}");
    let msg = err.to_string();
    for needle in ["Pooling::Session", "transaction_pooling(true)", "xact"] {
        assert!(msg.contains(needle), "{needle} in {msg}");
    }
}

/// Issue 15.16: undeclared, in a fresh process, with one client, every
/// transaction of pglock's connection lands on the same server session, so
/// nothing at lock time shows the pooler; the cancel key does, at connect.
#[tokio::test]
async fn an_undeclared_transaction_pooler_is_detected_before_the_first_session_lock() {
    let pg = cluster();
    let bouncer = pg.start_pgbouncer("transaction", 2).expect("pgbouncer");
    register(
        "txpool-undeclared",
        Config::from_url(&bouncer.url()).unwrap(),
    )
    .unwrap();
    let obs = session(&pg.url(), "observer").await;
    let key = unique_key();
    for lock in [
        advisory(key).using("txpool-undeclared"),
        advisory(key).using("txpool-undeclared").no_wait(),
        advisory(key).using("txpool-undeclared").shared(),
    ] {
        let err = within(10, "refused", lock.acquire()).await.unwrap_err();
        assert_says_how_to_declare(&err);
        assert!(
            holders(&obs, LockKey::Int(key)).await.is_empty(),
            "no lock taken anywhere"
        );
    }
    // Annotated-style scopes too: the body does not run.
    let ran = advisory(key)
        .using("txpool-undeclared")
        .run(async { true })
        .await;
    assert_says_how_to_declare(&ran.unwrap_err());
    // Transaction-level locks work on the same alias.
    let g = advisory(key)
        .xact()
        .using("txpool-undeclared")
        .acquire()
        .await
        .unwrap();
    assert_eq!(holders(&obs, LockKey::Int(key)).await.len(), 1);
    g.commit().await.unwrap();
    assert!(holders(&obs, LockKey::Int(key)).await.is_empty());
}

/// Issue 15.16: undeclared, pglock's named statements collided with those a
/// server session already had from another client (another process of the
/// same program names its statements `s0`, `s1`, … too): `xact` failed with
/// `prepared statement "s0" already exists` (42P05). Behind a detected
/// pooler pglock uses unnamed statements only.
#[tokio::test]
async fn xact_locks_work_behind_an_undeclared_transaction_pooler() {
    let pg = cluster();
    // One server session: every client's statements run on it.
    let bouncer = pg.start_pgbouncer("transaction", 1).expect("pgbouncer");
    let other = session(&bouncer.url(), "other-process").await;
    let names: String = (0..200)
        .map(|i| format!("PREPARE s{i} AS SELECT {i}; "))
        .collect();
    other.batch_execute(&names).await.unwrap();
    drop(other);
    register("txpool-xact", Config::from_url(&bouncer.url()).unwrap()).unwrap();
    let obs = session(&pg.url(), "observer").await;
    let key = unique_key();
    let k = LockKey::Int(key);
    let lock = advisory(key).xact().using("txpool-xact");

    let g = within(10, "xact lock", lock.acquire()).await.unwrap();
    let held_by = holders(&obs, k).await;
    assert_eq!(held_by.len(), 1, "held on the server");
    let direct = session(&pg.url(), "direct").await;
    let got: bool = direct
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(!got, "it excludes a direct session");
    assert_eq!(vec![backend_pid(g.client()).await], held_by);
    g.commit().await.unwrap();
    assert!(holders(&obs, k).await.is_empty());
    for _ in 0..3 {
        let (pid, held) = lock
            .run(async {
                let db = connection_for("txpool-xact").await.unwrap();
                (backend_pid(&db).await, holders(&obs, k).await)
            })
            .await
            .unwrap();
        assert_eq!(vec![pid], held);
    }
    lock.clone()
        .no_wait()
        .acquire()
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert!(holders(&obs, k).await.is_empty());
}

/// The cancel key is read whatever the client's `sslmode`: behind a pooler that
/// requires TLS of its clients (a plain session is refused: the sessions that
/// work are encrypted), the pooler is still detected.
#[tokio::test]
async fn a_pooler_is_detected_over_tls() {
    let pg = cluster();
    let certs = pglock_testkit::TestCerts::generate().expect("certificates");
    let bouncer = pg
        .start_pgbouncer_tls("transaction", 2, &certs)
        .expect("pgbouncer");
    let obs = session(&pg.url(), "observer").await;
    let ca = certs.ca().display().to_string();
    let key = unique_key();
    register(
        "tls-pooler-disable",
        Config::from_url(&format!("{}?sslmode=disable", bouncer.url())).unwrap(),
    )
    .unwrap();
    let err = advisory(key)
        .xact()
        .using("tls-pooler-disable")
        .acquire()
        .await
        .unwrap_err();
    assert_ne!(
        err.kind(),
        ErrorKind::Pooler,
        "refused by the pooler: {err}"
    );
    for (alias, params) in [
        ("tls-pooler-require", "sslmode=require".to_owned()),
        ("tls-pooler-prefer", "sslmode=prefer".to_owned()),
        (
            "tls-pooler-verify-ca",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
        ),
    ] {
        let url = format!("{}?{params}", bouncer.url());
        register(alias, Config::from_url(&url).unwrap()).unwrap();
        let err = within(10, "refused", advisory(key).using(alias).acquire())
            .await
            .unwrap_err();
        assert_says_how_to_declare(&err);
        let g = advisory(key).xact().using(alias).acquire().await.unwrap();
        assert_eq!(holders(&obs, LockKey::Int(key)).await.len(), 1, "{alias}");
        g.commit().await.unwrap();
    }
    assert!(holders(&obs, LockKey::Int(key)).await.is_empty());
}

/// A plain TCP forwarder (a container's port mapping) passes the server's
/// cancel key on: no pooler, session locks work as on a direct connection.
#[tokio::test]
async fn a_plain_forwarder_is_not_a_pooler() {
    let pg = cluster();
    let proxy = pglock_testkit::PartitionProxy::start(pg.port()).expect("proxy");
    register(
        "forwarded",
        Config::from_url(&proxy.url_for(&pg.url())).unwrap(),
    )
    .unwrap();
    let obs = session(&pg.url(), "observer").await;
    let key = unique_key();
    let g = advisory(key).using("forwarded").acquire().await.unwrap();
    let pid = backend_pid(g.client()).await;
    assert_eq!(holders(&obs, LockKey::Int(key)).await, vec![pid]);
    g.release().await.unwrap();
    let (pid, held) = advisory(key)
        .using("forwarded")
        .run(async {
            let db = connection_for("forwarded").await.unwrap();
            (
                backend_pid(&db).await,
                holders(&obs, LockKey::Int(key)).await,
            )
        })
        .await
        .unwrap();
    assert_eq!(held, vec![pid]);
    assert!(
        proxy.accepted() >= 1,
        "the sessions went through the forwarder"
    );
}

/// Session pooling: undeclared, pglock cannot tell it from transaction pooling
/// and refuses session locks, saying how to declare it; declared, session locks
/// work normally.
#[tokio::test]
async fn session_pooling_works_once_declared() {
    let pg = cluster();
    let bouncer = pg.start_pgbouncer("session", 3).expect("pgbouncer");
    register(
        "sespool-undeclared",
        Config::from_url(&bouncer.url()).unwrap(),
    )
    .unwrap();
    register(
        "sespool",
        Config::from_url(&bouncer.url())
            .unwrap()
            .pooling(Pooling::Session),
    )
    .unwrap();
    let obs = session(&pg.url(), "observer").await;
    let key = unique_key();
    let err = advisory(key)
        .using("sespool-undeclared")
        .acquire()
        .await
        .unwrap_err();
    assert_says_how_to_declare(&err);
    assert!(holders(&obs, LockKey::Int(key)).await.is_empty());
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
