//! Reliability on the bad day: lost locks, cancellations at any point, a server
//! restart. Every outcome is checked on the server (`pg_locks`,
//! `pg_stat_activity`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pglock_runtime::{advisory, connection_for, register, Config, ErrorKind, LockKey};
use pglock_tests::*;

#[tokio::test]
async fn lost_resolves_when_the_backend_is_terminated() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let g = advisory(key).acquire().await.unwrap();
    assert!(!g.is_lost());
    let pid = g.connection().unwrap().backend_pid();
    let started = Instant::now();
    terminate(&obs, pid).await;
    let e = within(5, "loss detected", g.lost()).await;
    assert_eq!(e.kind(), ErrorKind::LockLost);
    assert!(e.is_lost());
    // Default heartbeat: 1 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(g.is_lost());
    let err = g.release().await.unwrap_err();
    assert!(err.is_connection_lost() || err.is_lost(), "{err:?}");
    assert_released(&obs, LockKey::Int(key)).await;
}

/// A lock released by SQL run on its own session through the exposed
/// connection (`pg_advisory_unlock_all()`) is not seen by the heartbeat, which
/// proves the session alive without reading `pg_locks` (issue 17.2): the
/// release reports it, even after heartbeats have run and another session has
/// taken the key meanwhile.
#[tokio::test]
async fn unlocked_behind_the_guards_back_is_reported_by_the_release() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let g = advisory(key).acquire().await.unwrap();
    let pid = g.connection().unwrap().backend_pid();
    g.client()
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    let (_other, other_pid) = advisory_holder(url(), "behind-the-back", key).await;
    assert_eq!(holders(&obs, LockKey::Int(key)).await, vec![other_pid]);
    // The default heartbeat (1 s) has checked the session since.
    pglock_testkit::observe::wait_until_query_starts_with(&obs, pid, "/* pglock heartbeat */")
        .await;
    let err = g.release().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LostBeforeRelease, "{err:?}");
    assert!(err.is_lost());
}

/// An `xact` lock ends with its transaction: a body that commits pglock's
/// transaction through the exposed connection has lost it, and the heartbeat
/// (which looks whether the transaction block is still open) says so.
#[tokio::test]
async fn lost_resolves_when_an_xact_locks_transaction_ends_behind_its_back() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let g = advisory(key).xact().acquire().await.unwrap();
    assert_eq!(holders(&obs, LockKey::Int(key)).await.len(), 1);
    g.client().batch_execute("COMMIT").await.unwrap();
    assert!(holders(&obs, LockKey::Int(key)).await.is_empty());
    let e = within(5, "loss detected", g.lost()).await;
    assert_eq!(e.kind(), ErrorKind::LockLost);
    assert!(e.to_string().contains("transaction has ended"), "{e}");
}

#[tokio::test]
async fn cancel_on_lost_stops_the_body() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let obs_pid = {
        tokio::spawn(async move {
            let obs = observer().await;
            let pid = loop {
                if let Some(p) = holders(&obs, LockKey::Int(key)).await.first() {
                    break *p;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            terminate(&obs, pid).await;
            pid
        })
    };
    let err = within(
        10,
        "body cancelled",
        advisory(key).cancel_on_lost().run(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            f.store(true, Ordering::SeqCst);
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost, "{err:?}");
    assert!(!finished.load(Ordering::SeqCst));
    obs_pid.await.unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

#[tokio::test]
async fn by_default_the_body_finishes_and_the_loss_is_reported() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let killer = terminate_holder(LockKey::Int(key));
    let err = within(
        10,
        "body",
        advisory(key).run(async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "finished"
        }),
    )
    .await
    .unwrap_err();
    assert!(err.is_connection_lost() || err.is_lost(), "{err:?}");
    killer.await.unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

/// `tokio::time::timeout` around a scope, and `JoinHandle::abort` of tasks holding
/// locks: the locks are released by the backstops within a bounded time.
#[tokio::test]
async fn timeouts_and_aborts_release_locks() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let k = LockKey::Int(key);
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        advisory(key).run(tokio::time::sleep(Duration::from_secs(30))),
    )
    .await;
    assert!(r.is_err());
    assert_released(&obs, k).await;

    let t = tokio::spawn(async move {
        advisory(key)
            .run(tokio::time::sleep(Duration::from_secs(30)))
            .await
    });
    while holders(&obs, k).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.abort();
    assert_released(&obs, k).await;

    let t = tokio::spawn(async move {
        let g = advisory(key).xact().acquire().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(g);
    });
    while holders(&obs, k).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.abort();
    assert_released(&obs, k).await;
}

/// Acquisitions cancelled at random points (before the statement is sent, while
/// the server waits, just after the grant) leave no lock and no waiter behind, and
/// the pool keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancellations_leave_nothing_behind() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let k = LockKey::Int(key);
    let mut seed = (key as u64) | 1;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut completed = 0;
    for i in 0..200 {
        // Half of the time someone else holds the key, so the attempt waits.
        let holder = if i % 2 == 0 {
            Some(advisory(key).acquire().await.unwrap())
        } else {
            None
        };
        let cut = Duration::from_micros(rand(4000));
        let attempt = tokio::time::timeout(cut, async {
            let g = advisory(key).acquire().await?;
            g.release().await
        })
        .await;
        if matches!(attempt, Ok(Ok(()))) {
            completed += 1;
        }
        if let Some(h) = holder {
            h.release().await.unwrap();
        }
        if i % 20 == 19 {
            assert_released(&obs, k).await;
        }
    }
    assert_released(&obs, k).await;
    // The pool still works and nothing else is left.
    advisory(key).no_wait().run(async {}).await.unwrap();
    assert_released(&obs, k).await;
    eprintln!("{completed} of 200 attempts completed before their deadline");
}

/// A server restart during a hold and between calls: typed errors, no hang, and
/// the pool recovers.
#[tokio::test]
async fn server_restart_is_survived() {
    let cluster = pglock_testkit::Cluster::start().expect("cluster");
    register(
        "restart",
        Config::from_url(&cluster.url())
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .checkout_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let key = unique_key();
    let g = advisory(key).using("restart").acquire().await.unwrap();
    cluster.stop().unwrap();
    let e = within(5, "loss detected", g.lost()).await;
    assert_eq!(e.kind(), ErrorKind::LockLost);
    let err = g.release().await.unwrap_err();
    assert!(err.is_connection_lost(), "{err:?}");

    // While the server is down: a typed error within the connect timeout.
    let err = within(10, "down", advisory(key).using("restart").acquire())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Pool, "{err:?}");

    cluster.restart().unwrap();
    let g = within(
        10,
        "after restart",
        advisory(key).using("restart").acquire(),
    )
    .await
    .unwrap();
    let c = connection_for("restart").await.unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    g.release().await.unwrap();
}

/// A lock on a hot standby excludes nobody on the primary: refused with an error
/// that says so, unless the alias opts in explicitly.
#[tokio::test]
async fn hot_standby_is_refused() {
    let primary = pglock_testkit::Cluster::start().expect("primary");
    let standby = primary.start_standby().expect("streaming standby");
    let in_recovery = standby.psql("SELECT pg_is_in_recovery()").unwrap();
    assert_eq!(in_recovery, "t", "the harness started a real standby");
    register("standby", Config::from_url(&standby.url()).unwrap()).unwrap();
    let err = advisory(1).using("standby").acquire().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Standby, "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("excludes nobody on the primary"), "{msg}");
    assert!(msg.contains("allow_standby"), "{msg}");
    assert!(connection_for("standby").await.unwrap_err().kind() == ErrorKind::Standby);

    register(
        "standby-ok",
        Config::from_url(&standby.url())
            .unwrap()
            .allow_standby(true),
    )
    .unwrap();
    let g = advisory(1).using("standby-ok").acquire().await.unwrap();
    g.release().await.unwrap();
}

/// A guard kept after the runtime that drove its connection shut down: the
/// session ends with the runtime (the server releases the lock), and the guard
/// reports the loss instead of pretending to hold it.
#[test]
fn a_guard_outliving_its_runtime_reports_the_loss() {
    setup_owned();
    let key = unique_key();
    let first = tokio::runtime::Runtime::new().unwrap();
    let g = first
        .block_on(async {
            tokio::spawn(async move { advisory(key).acquire().await })
                .await
                .unwrap()
        })
        .unwrap();
    let pid = g.connection().unwrap().backend_pid();
    drop(first);
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let obs = observer().await;
        assert_released(&obs, LockKey::Int(key)).await;
        assert_gone(&obs, pid).await;
        let e = within(10, "loss detected", g.lost()).await;
        assert!(e.is_lost() || e.is_connection_lost(), "{e:?}");
        assert!(g.is_lost());
        let err = g.release().await.unwrap_err();
        assert!(err.is_connection_lost() || err.is_lost(), "{err:?}");
    });
}

/// A pipelined release (the default) on a session that ended while the body ran
/// (the body never touched the connection, so the release would not be awaited):
/// the call still fails, and nothing is left on the server.
#[tokio::test]
async fn session_ended_before_a_pipelined_release_is_the_calls_error() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let killer = terminate_holder(LockKey::Int(key));
    let err = advisory(key)
        .run(async {
            tokio::time::sleep(Duration::from_millis(400)).await;
        })
        .await
        .unwrap_err();
    assert!(err.is_connection_lost() || err.is_lost(), "{err:?}");
    killer.await.unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

#[pglock_runtime::advisory_lock(key = key, using = "cancel-undo")]
#[pglock_runtime::lock_timeout("3s", using = "cancel-undo")]
async fn with_lock_and_timeout(key: i64) -> Result<(), pglock_runtime::Error> {
    Ok(())
}

/// A scope cancelled while it is being undone (here: between its awaited unlock
/// and the `lock_timeout` restore that follows it) must not hand its session back
/// to the pool half-undone: the next checkout of the one-connection pool always
/// sees the server's own `lock_timeout` and no advisory lock.
#[tokio::test]
async fn cancelled_undo_leaves_no_state_in_the_pool() {
    setup_owned();
    one_connection_alias("cancel-undo");
    let key = unique_key();
    let base = show_lock_timeout(&connection_for("cancel-undo").await.unwrap()).await;
    let mut seed = (key as u64) | 1;
    for _ in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let cut = Duration::from_micros(seed % 1500);
        let _ = tokio::time::timeout(cut, with_lock_and_timeout(key)).await;
        let c = connection_for("cancel-undo").await.unwrap();
        assert_eq!(
            show_lock_timeout(&c).await,
            base,
            "lock_timeout left behind"
        );
        let held: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(held, 0, "advisory lock left behind");
    }
}

/// Issue 16: a program that returns from `main` right after its last call is not
/// an incident: no warning about releases on the wire (the runtime shutting down
/// closes the socket, and the server releases the session's locks — checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_exit_does_not_warn() {
    setup_owned();
    let obs = observer().await;
    for _ in 0..3 {
        let key = unique_key();
        let out = within(
            60,
            "short-lived exits",
            tokio::process::Command::new(env!("CARGO_BIN_EXE_short-lived"))
                .args([url(), &key.to_string()])
                .output(),
        )
        .await
        .expect("short-lived runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout} {stderr}");
        assert_eq!(stdout.trim(), "ok 3");
        assert!(!stderr.contains("WARN"), "a clean exit warned: {stderr}");
        assert_released(&obs, LockKey::Int(key)).await;
    }
}
