//! The prioritize watchdog: blockers of the protected session are terminated or
//! cancelled within a couple of intervals, within its guard rails. Observed from
//! `pg_stat_activity`.

use std::time::Duration;

use pglock_runtime::{
    advisory, connection, register, Config, ErrorKind, LockKey, Prioritize, PrioritizeAction,
};
use pglock_tests::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn relation_lock_blocker_is_terminated_and_the_body_completes() {
    setup_owned();
    let obs = observer().await;
    let t = fresh_table(&obs, "prio_rel").await;
    let (blocker, blocker_pid) = table_reader(url(), "long-reader", &t).await;

    let done = within(
        20,
        "prioritized migration",
        Prioritize::new().interval(ms(200)).run(async {
            let db = connection().await.unwrap();
            db.batch_execute(&format!("ALTER TABLE {t} ADD COLUMN y int"))
                .await
        }),
    )
    .await
    .unwrap();
    done.output.expect("the migration ran");
    assert_eq!(done.actions.len(), 1, "{:?}", done.actions);
    let a = &done.actions[0];
    assert_eq!(a.backend.pid, blocker_pid);
    assert_eq!(a.backend.application_name, "long-reader");
    assert_eq!(a.action, PrioritizeAction::Terminate);
    assert!(a.signalled && !a.dry_run);
    assert_gone(&obs, blocker_pid).await;
    // The victim sees its connection terminated.
    let err = blocker.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(
        pglock_runtime::Error::from(err).kind(),
        ErrorKind::ConnectionLost
    );
}

#[tokio::test]
async fn advisory_lock_blocker_is_terminated() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(url(), "advisory-holder", key).await;

    let done = within(
        20,
        "prioritized acquisition",
        Prioritize::new().interval(ms(200)).run(async {
            let g = advisory(key).acquire().await.unwrap();
            let mine = g.connection().unwrap().backend_pid();
            assert_eq!(holders(&obs, LockKey::Int(key)).await, vec![mine]);
            g.release().await.unwrap();
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        done.actions
            .iter()
            .map(|a| a.backend.pid)
            .collect::<Vec<_>>(),
        vec![blocker_pid]
    );
    assert_gone(&obs, blocker_pid).await;
}

#[tokio::test]
async fn cancel_action_cancels_the_blocking_statement() {
    setup_owned();
    let obs = observer().await;
    let t = fresh_table(&obs, "prio_cancel").await;
    let blocker = session(url(), "slow-query").await;
    let blocker_pid = backend_pid(&blocker).await;
    // A long statement in a transaction holding a lock: cancelling it aborts the
    // transaction, which releases the lock, and leaves the session alive.
    let running = tokio::spawn({
        let t = t.clone();
        async move {
            let r = blocker
                .batch_execute(&format!(
                    "BEGIN; LOCK TABLE {t} IN SHARE MODE; SELECT pg_sleep(30)"
                ))
                .await;
            (r, blocker)
        }
    });
    for _ in 0..500 {
        let n: i64 = obs
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND granted \
                 AND relation = to_regclass($2)::oid",
                &[&blocker_pid, &t],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        tokio::time::sleep(ms(10)).await;
    }
    let done = within(
        20,
        "prioritized",
        Prioritize::new()
            .interval(ms(200))
            .action(PrioritizeAction::Cancel)
            .run(async {
                let db = connection().await.unwrap();
                db.batch_execute(&format!("BEGIN; LOCK TABLE {t} IN EXCLUSIVE MODE; COMMIT"))
                    .await
            }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    assert_eq!(done.actions[0].action, PrioritizeAction::Cancel);
    assert_eq!(done.actions[0].backend.pid, blocker_pid);
    let (r, blocker) = within(10, "blocker's statement ends", running)
        .await
        .unwrap();
    assert_eq!(
        pglock_runtime::Error::from(r.unwrap_err()).kind(),
        ErrorKind::Cancelled
    );
    assert!(
        !is_gone(&obs, blocker_pid).await,
        "cancel leaves the session alive"
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn own_process_sessions_are_never_signalled() {
    setup_owned();
    let key = unique_key();
    let ours = advisory(key).acquire().await.unwrap();
    let done = Prioritize::new()
        .interval(ms(100))
        .timeout(Some(ms(800)))
        .run(async { advisory(key).acquire().await.map(drop) })
        .await
        .unwrap();
    assert_eq!(done.output.unwrap_err().kind(), ErrorKind::LockTimeout);
    assert!(done.actions.is_empty(), "{:?}", done.actions);
    ours.release()
        .await
        .expect("our own holder still holds the lock");
}

#[tokio::test]
async fn young_blockers_are_spared_by_min_blocker_age() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(url(), "young", key).await;
    let done = Prioritize::new()
        .interval(ms(100))
        .min_blocker_age(Duration::from_secs(60))
        .timeout(Some(ms(800)))
        .run(async { advisory(key).acquire().await.map(drop) })
        .await
        .unwrap();
    assert!(done.output.unwrap_err().is_timeout());
    assert!(done.actions.is_empty());
    assert!(!is_gone(&obs, blocker_pid).await);
}

#[tokio::test]
async fn max_kills_caps_each_tick_and_periodic_false_acts_once() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let mut blockers = Vec::new();
    for i in 0..3 {
        let s = session(url(), &format!("sharer-{i}")).await;
        s.execute("SELECT pg_advisory_lock_shared($1)", &[&key])
            .await
            .unwrap();
        blockers.push((backend_pid(&s).await, s));
    }
    let done = Prioritize::new()
        .interval(ms(200))
        .max_kills(1)
        .periodic(false)
        .timeout(Some(ms(1500)))
        .run(async { advisory(key).acquire().await.map(drop) })
        .await
        .unwrap();
    assert!(done.output.unwrap_err().is_timeout());
    assert_eq!(done.actions.len(), 1, "{:?}", done.actions);
    let killed = done.actions[0].backend.pid;
    assert_gone(&obs, killed).await;
    for (p, _) in &blockers {
        if *p != killed {
            assert!(!is_gone(&obs, *p).await, "pid {p} was spared");
        }
    }

    // Periodic with the same cap gets through all three, one per tick.
    let done = within(
        20,
        "periodic",
        Prioritize::new()
            .interval(ms(200))
            .max_kills(1)
            .run(async { advisory(key).acquire().await.map(drop) }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    assert_eq!(done.actions.len(), 2, "{:?}", done.actions);
}

#[tokio::test]
async fn dry_run_reports_but_kills_nothing() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(url(), "dry", key).await;
    let done = Prioritize::new()
        .interval(ms(100))
        .dry_run(true)
        .timeout(Some(ms(700)))
        .run(async { advisory(key).acquire().await.map(drop) })
        .await
        .unwrap();
    assert!(done.output.unwrap_err().is_timeout());
    assert!(!done.actions.is_empty());
    assert!(done
        .actions
        .iter()
        .all(|a| a.dry_run && !a.signalled && a.backend.pid == blocker_pid));
    assert!(!is_gone(&obs, blocker_pid).await);
}

#[tokio::test]
async fn application_name_and_user_filters() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(url(), "protected-service", key).await;
    for p in [
        Prioritize::new().deny_application_names(["protected-service"]),
        Prioritize::new().allow_application_names(["someone-else"]),
        Prioritize::new().deny_users(["postgres"]),
        Prioritize::new().allow_users(["nobody"]),
    ] {
        let done = p
            .interval(ms(100))
            .timeout(Some(ms(500)))
            .run(async { advisory(key).acquire().await.map(drop) })
            .await
            .unwrap();
        assert!(done.output.unwrap_err().is_timeout());
        assert!(done.actions.is_empty());
    }
    assert!(!is_gone(&obs, blocker_pid).await);
    let done = within(
        20,
        "allowed",
        Prioritize::new()
            .interval(ms(100))
            .allow_application_names(["protected-service"])
            .allow_users(["postgres"])
            .run(async { advisory(key).acquire().await.map(drop) }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    assert_gone(&obs, blocker_pid).await;
}

/// Only direct blockers by default: in a chain S1 ← S2 ← protected, S2 goes and
/// S1 stays.
#[tokio::test]
async fn second_degree_blockers_are_untouched_by_default() {
    setup_owned();
    let obs = observer().await;
    let (k1, k2) = (unique_key(), unique_key());
    let (_s1, s1_pid) = advisory_holder(url(), "first-degree-holder", k1).await;
    let (s2, s2_pid) = advisory_holder(url(), "second", k2).await;
    let s2_wait =
        tokio::spawn(async move { s2.execute("SELECT pg_advisory_lock($1)", &[&k1]).await });
    wait_until_blocked(&obs, s2_pid).await;

    let done = within(
        20,
        "chain",
        Prioritize::new()
            .interval(ms(200))
            .run(async { advisory(k2).acquire().await?.release().await }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    assert_eq!(
        done.actions
            .iter()
            .map(|a| a.backend.pid)
            .collect::<Vec<_>>(),
        vec![s2_pid]
    );
    assert!(s2_wait.await.unwrap().is_err());
    assert!(
        !is_gone(&obs, s1_pid).await,
        "the second-degree blocker survives"
    );

    // With indirect(true) the holder at the root goes too.
    let (s3, s3_pid) = advisory_holder(url(), "third", k2).await;
    assert_eq!(holders(&obs, LockKey::Int(k2)).await, vec![s3_pid]);
    let s3_wait =
        tokio::spawn(async move { s3.execute("SELECT pg_advisory_lock($1)", &[&k1]).await });
    wait_until_blocked(&obs, s3_pid).await;
    let done = within(
        20,
        "indirect",
        Prioritize::new()
            .interval(ms(200))
            .indirect(true)
            .run(async { advisory(k2).acquire().await.map(drop) }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    let mut pids: Vec<i32> = done.actions.iter().map(|a| a.backend.pid).collect();
    pids.sort_unstable();
    let mut expected = vec![s1_pid, s3_pid];
    expected.sort_unstable();
    assert_eq!(pids, expected);
    let _ = s3_wait.await;
}

/// django-pglock's `test_prioritize_timeout`: a timeout shorter than the interval
/// fails the work before the watchdog acts.
#[tokio::test]
async fn timeout_shorter_than_interval_fails_first() {
    setup_owned();
    let obs = observer().await;
    let t = fresh_table(&obs, "prio_to").await;
    let (_blocker, blocker_pid) = table_reader(url(), "reader", &t).await;
    let done = Prioritize::new()
        .interval(Duration::from_secs(3))
        .timeout(Some(ms(300)))
        .run(async {
            let db = connection().await.unwrap();
            let r = db
                .batch_execute(&format!("BEGIN; LOCK TABLE {t}; COMMIT"))
                .await;
            db.batch_execute("ROLLBACK").await.unwrap();
            r
        })
        .await
        .unwrap();
    let err = pglock_runtime::Error::from(done.output.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::LockTimeout);
    assert!(done.actions.is_empty());
    assert!(!is_gone(&obs, blocker_pid).await);
}

/// A watchdog that cannot signal (a role without the privilege) fails the scope
/// when it ends, instead of failing silently.
#[tokio::test]
async fn watchdog_failure_surfaces_at_scope_end() {
    setup_owned();
    let obs = observer().await;
    let role = format!("weak_{}", unique_key().unsigned_abs());
    // It can see other sessions (pg_read_all_stats) but not signal a superuser's.
    obs.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT pg_read_all_stats TO {role}"
    ))
    .await
    .unwrap();
    let mut cfg: tokio_postgres::Config = url().parse().unwrap();
    cfg.user(&role);
    let alias: &'static str = Box::leak(role.clone().into_boxed_str());
    register(alias, Config::new(cfg)).unwrap();
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(url(), "superuser-holder", key).await;
    let err = Prioritize::new()
        .interval(ms(100))
        .timeout(Some(ms(700)))
        .using(alias)
        .run(async { advisory(key).using(alias).acquire().await.map(drop) })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("prioritize watchdog"), "{err}");
    assert!(!is_gone(&obs, blocker_pid).await);
}

/// `using` is honoured by the watchdog: the protected work and the blocker are on a
/// second cluster; a watchdog looking at the default one would find nothing.
#[tokio::test]
async fn using_a_second_server() {
    setup_owned();
    let second = pglock_testkit::Cluster::start().expect("second cluster");
    register("second", Config::from_url(&second.url()).unwrap()).unwrap();
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(&second.url(), "remote-holder", key).await;
    let done = within(
        20,
        "second server",
        Prioritize::new()
            .interval(ms(200))
            .using("second")
            .run(async { advisory(key).using("second").acquire().await.map(drop) }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    assert_eq!(
        done.actions
            .iter()
            .map(|a| a.backend.pid)
            .collect::<Vec<_>>(),
        vec![blocker_pid]
    );
}
