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
    let (blocker, blocker_pid) = table_reader(&app_url(), "long-reader", &t).await;

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
    let (_blocker, blocker_pid) = advisory_holder(&app_url(), "advisory-holder", key).await;

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
    let blocker = session(&app_url(), "slow-query").await;
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
    let (_blocker, blocker_pid) = advisory_holder(&app_url(), "young", key).await;
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
        let s = session(&app_url(), &format!("sharer-{i}")).await;
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
    let (_blocker, blocker_pid) = advisory_holder(&app_url(), "dry", key).await;
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
    let (_blocker, blocker_pid) = advisory_holder(&app_url(), "protected-service", key).await;
    for p in [
        Prioritize::new().deny_application_names(["protected-service"]),
        Prioritize::new().allow_application_names(["someone-else"]),
        Prioritize::new().deny_users([pglock_testkit::APP_ROLE]),
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
            .allow_users([pglock_testkit::APP_ROLE])
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
    let (_s1, s1_pid) = advisory_holder(&app_url(), "first-degree-holder", k1).await;
    let (s2, s2_pid) = advisory_holder(&app_url(), "second", k2).await;
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
    let (s3, s3_pid) = advisory_holder(&app_url(), "third", k2).await;
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
    let (_blocker, blocker_pid) = table_reader(&app_url(), "reader", &t).await;
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

/// A role for the watchdog: `grants` given, alias of the same name.
async fn watchdog_role(
    obs: &tokio_postgres::Client,
    prefix: &str,
    grants: &[&str],
) -> &'static str {
    let role = format!("{prefix}_{}", unique_key().unsigned_abs());
    obs.batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    for g in grants {
        obs.batch_execute(&format!("GRANT {g} TO {role}"))
            .await
            .unwrap();
    }
    let mut cfg: tokio_postgres::Config = url().parse().unwrap();
    cfg.user(&role);
    let alias: &'static str = Box::leak(role.into_boxed_str());
    register(alias, Config::new(cfg)).unwrap();
    alias
}

/// Issue 15.5: a signal the server refuses (a superuser's session, for a role
/// that is none) is recorded as a refused action; the watchdog keeps watching
/// and signals the other blockers; the work's own result is returned.
#[tokio::test]
async fn a_refused_signal_is_recorded_and_does_not_end_the_watchdog() {
    setup_owned();
    let obs = observer().await;
    // It can see every session and signal ordinary roles', not a superuser's.
    let alias = watchdog_role(&obs, "weak", &["pg_read_all_stats", "pg_signal_backend"]).await;
    let key = unique_key();
    // Two share the key: a superuser's session and an application's.
    let mut pids = Vec::new();
    let mut sharers = Vec::new();
    for (url, name) in [
        (url().to_owned(), "superuser-holder"),
        (app_url(), "app-holder"),
    ] {
        let s = session(&url, name).await;
        s.batch_execute(&format!("SELECT pg_advisory_lock_shared({key})"))
            .await
            .unwrap();
        pids.push(backend_pid(&s).await);
        sharers.push(s);
    }
    let (su_pid, app_pid) = (pids[0], pids[1]);
    let done = Prioritize::new()
        .interval(ms(100))
        .timeout(Some(ms(1500)))
        .signal_superusers(true)
        .using(alias)
        .run(async { advisory(key).using(alias).acquire().await.map(drop) })
        .await
        .expect("the watchdog's trouble is not the work's error");
    // The work timed out behind the superuser: its own result, not the watchdog's.
    assert!(done.output.unwrap_err().is_timeout());
    let refused: Vec<_> = done
        .actions
        .iter()
        .filter(|a| a.refused.is_some())
        .collect();
    assert!(
        refused.iter().all(|a| a.backend.pid == su_pid) && !refused.is_empty(),
        "{:?}",
        done.actions
    );
    assert!(
        refused[0].refused.as_deref().unwrap().contains("superuser"),
        "{:?}",
        refused[0].refused
    );
    assert!(
        done.actions
            .iter()
            .any(|a| a.backend.pid == app_pid && a.signalled),
        "the other blocker was signalled in the same tick: {:?}",
        done.actions
    );
    assert_gone(&obs, app_pid).await;
    assert!(!is_gone(&obs, su_pid).await);
}

/// Issue 15.6: superusers' sessions are spared unless asked for.
#[tokio::test]
async fn superusers_sessions_are_spared_by_default() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let (_su, su_pid) = advisory_holder(url(), "dba-console", key).await;
    let done = Prioritize::new()
        .interval(ms(100))
        .timeout(Some(ms(600)))
        .run(async { advisory(key).acquire().await.map(drop) })
        .await
        .unwrap();
    assert!(done.output.unwrap_err().is_timeout());
    assert!(done.actions.is_empty(), "{:?}", done.actions);
    assert!(!is_gone(&obs, su_pid).await);
    let done = within(
        20,
        "opted in",
        Prioritize::new()
            .interval(ms(100))
            .signal_superusers(true)
            .run(async { advisory(key).acquire().await.map(drop) }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    assert_gone(&obs, su_pid).await;
}

/// Issue 15.4: a role without `pg_read_all_stats` sees other roles' blockers
/// with NULL columns; that is reported as a problem naming the grants, not
/// passed over with a debug event.
#[tokio::test]
async fn a_restricted_role_is_told_which_grants_it_needs() {
    setup_owned();
    let obs = observer().await;
    let alias = watchdog_role(&obs, "blind", &[]).await;
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(&app_url(), "hidden-holder", key).await;
    let (_guard, events) = capture_events();
    let done = Prioritize::new()
        .interval(ms(100))
        .timeout(Some(ms(800)))
        .using(alias)
        .run(async { advisory(key).using(alias).acquire().await.map(drop) })
        .await
        .unwrap();
    assert!(done.output.unwrap_err().is_timeout());
    assert_eq!(done.problems.len(), 1, "reported once: {:?}", done.problems);
    let p = &done.problems[0];
    assert_eq!(p.kind(), ErrorKind::Permission, "{p}");
    let text = p.to_string();
    assert!(
        text.contains("pg_read_all_stats")
            && text.contains("pg_signal_backend")
            && text.contains(&blocker_pid.to_string()),
        "{text}"
    );
    assert!(!is_gone(&obs, blocker_pid).await);
    let _ = events;
}

/// Issue 15.7: the watchdog has a session of its own, so a one-connection
/// pool (taken by the protected work) does not starve it.
#[tokio::test]
async fn a_one_connection_pool_does_not_starve_the_watchdog() {
    setup_owned();
    let obs = observer().await;
    let alias = one_connection_alias("prio-one");
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(&app_url(), "starver", key).await;
    let done = within(
        20,
        "one connection",
        Prioritize::new()
            .interval(ms(100))
            .using(alias)
            .run(async { advisory(key).using(alias).acquire().await.map(drop) }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    assert_gone(&obs, blocker_pid).await;
}

/// Issue 15.6: only sessions of the protected work's database by default. A
/// lock on a shared catalog (here the rarely read `pg_shdescription`) makes a
/// session of another database a blocker.
#[tokio::test]
async fn blockers_in_another_database_are_spared_by_default() {
    setup_owned();
    let obs = observer().await;
    let db = format!("otherdb_{}", unique_key().unsigned_abs());
    obs.batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let other_url = app_url().replace("/postgres", &format!("/{db}"));
    let other = session(&other_url, "other-db").await;
    other
        .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_shdescription IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let other_pid = backend_pid(&other).await;
    let migrate = || async {
        let db = connection().await.unwrap();
        db.batch_execute(
            "BEGIN; LOCK TABLE pg_catalog.pg_shdescription IN ACCESS EXCLUSIVE MODE; COMMIT",
        )
        .await
        .map_err(pglock_runtime::Error::from)
    };
    let done = Prioritize::new()
        .interval(ms(100))
        .timeout(Some(ms(600)))
        .run(async {
            let r = migrate().await;
            connection()
                .await
                .unwrap()
                .batch_execute("ROLLBACK")
                .await
                .ok();
            r
        })
        .await
        .unwrap();
    assert!(done.output.unwrap_err().is_timeout());
    assert!(done.actions.is_empty(), "{:?}", done.actions);
    assert!(!is_gone(&obs, other_pid).await);
    let done = within(
        20,
        "any database",
        Prioritize::new()
            .interval(ms(100))
            .any_database(true)
            .run(migrate()),
    )
    .await
    .unwrap();
    done.output.unwrap();
    assert_gone(&obs, other_pid).await;
}

/// `using` is honoured by the watchdog: the protected work and the blocker are on a
/// second cluster; a watchdog looking at the default one would find nothing.
#[tokio::test]
async fn using_a_second_server() {
    setup_owned();
    let second = pglock_testkit::Cluster::start().expect("second cluster");
    register("second", Config::from_url(&second.url()).unwrap()).unwrap();
    let key = unique_key();
    let (_blocker, blocker_pid) = advisory_holder(&second.app_url(), "remote-holder", key).await;
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
