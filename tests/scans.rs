//! Issue 17.2: what pglock runs on every release, every return of a used
//! connection to its pool and every heartbeat costs the server what a small
//! statement costs, whatever the server's lock count. Observed from the server
//! (`pg_stat_activity`: the statement text, and `state_change - query_start`,
//! the time the server spent on it) while another session holds 10,000
//! advisory locks, against a `pg_locks` read on the same server at the same
//! time (which copies the whole lock table: its cost grows with every lock).

use std::time::Duration;

use pglock_runtime::{advisory, connection_for, pool_status, register, Config, LockKey};
use pglock_testkit::observe::wait_until_query_starts_with;
use pglock_tests::*;

/// Locks the foreign session holds.
const FOREIGN: i64 = 10_000;
/// Samples per statement (medians).
const SAMPLES: usize = 7;
/// The heartbeat's tag (`sql::HEARTBEAT_TAG`, which `Backend::is_pglock_heartbeat`
/// reads).
const TAG: &str = "/* pglock heartbeat */";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Waits until every connection of `alias` is back in its pool (a used one
/// comes back after its return check).
async fn settle(alias: &str) {
    for _ in 0..1000 {
        match pool_status(alias) {
            Some(s) if s.open == s.idle => return,
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
    panic!("the connections of `{alias}` did not come back to the pool");
}

/// The server time of a `pg_locks` read of one session's advisory locks (the
/// shape of the heartbeat and the return check before issue 17), now.
async fn pg_locks_read(obs: &tokio_postgres::Client) -> Duration {
    let s = session(url(), "scans-reference").await;
    let pid = backend_pid(&s).await;
    let mut v = Vec::new();
    for _ in 0..SAMPLES {
        s.simple_query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        )
        .await
        .unwrap();
        v.push(last_statement(obs, pid).await.expect("idle").1);
    }
    median(v)
}

#[tokio::test]
async fn release_return_check_and_heartbeat_do_not_read_the_servers_lock_table() {
    setup_owned();
    let alias = "scans";
    register(
        alias,
        Config::from_url(url())
            .unwrap()
            .max_size(1)
            .heartbeat(Some(Duration::from_millis(50))),
    )
    .unwrap();
    let obs = observer().await;
    let key = unique_key();
    let _foreign = foreign_advisory_locks(url(), "scans-foreign", 1 << 41, FOREIGN).await;
    let reference = pg_locks_read(&obs).await;

    // The pipelined release (the body never had the connection): its check is
    // the unlock's own reply, `false` for a lock the session did not hold.
    let mut release = Vec::new();
    let mut pid = 0;
    for _ in 0..SAMPLES {
        advisory(key).using(alias).run(async {}).await.unwrap();
        settle(alias).await;
        let c = connection_for(alias).await.unwrap();
        pid = c.backend_pid();
        // The unlock is pipelined: it may still be on its way to the server.
        let spent = within(5, "the unlock on the server", async {
            loop {
                match last_statement(&obs, pid).await {
                    Some((q, spent)) if q.starts_with("SELECT pg_advisory_unlock(") => break spent,
                    _ => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        })
        .await;
        release.push(spent);
        drop(c);
        settle(alias).await;
    }

    // The return check of a used connection: a reset.
    let mut checks = Vec::new();
    for _ in 0..SAMPLES {
        let c = connection_for(alias).await.unwrap();
        assert_eq!(c.backend_pid(), pid, "one connection");
        drop(c);
        settle(alias).await;
        let (query, spent) = last_statement(&obs, pid).await.expect("idle");
        assert!(query.contains("pg_advisory_unlock_all()"), "{query}");
        assert!(!query.contains("pg_locks"), "{query}");
        checks.push(spent);
    }

    // The heartbeat of a held lock (its first check also sets the server's
    // idle timers; the later ones are the heartbeat proper).
    let g = advisory(key).using(alias).acquire().await.unwrap();
    let pid = g.connection().unwrap().backend_pid();
    wait_until_query_starts_with(&obs, pid, TAG).await;
    let mut beats = Vec::new();
    for _ in 0..200 {
        if beats.len() == SAMPLES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        if let Some((query, spent)) = last_statement(&obs, pid).await {
            if query.starts_with(TAG) && !query.contains("set_config") {
                assert!(!query.contains("pg_locks"), "{query}");
                beats.push(spent);
            }
        }
    }
    assert_eq!(beats.len(), SAMPLES, "heartbeats seen");
    assert!(!g.is_lost());
    g.release().await.unwrap();
    assert_released(&obs, LockKey::Int(key)).await;

    let (release, checks, beats) = (median(release), median(checks), median(beats));
    eprintln!(
        "server time with {FOREIGN} foreign locks: pg_locks read {reference:?}, \
         release {release:?}, return check {checks:?}, heartbeat {beats:?}"
    );
    // A `pg_locks` read of 10,000 locks takes milliseconds; what pglock runs
    // takes a fraction of it (before issue 17, the return check and the
    // heartbeat each contained such a read: they took at least `reference`).
    for (what, spent) in [
        ("the release", release),
        ("the return check", checks),
        ("the heartbeat", beats),
    ] {
        assert!(
            spent * 3 < reference,
            "{what} took {spent:?} on the server, a pg_locks read {reference:?}"
        );
    }
}

/// The periodic look at what a `lock_timeout` body waits for (`lock/waits.rs`,
/// every third of the limit) reads `pg_locks` only while the session is
/// waiting for a lock: the server's plan for a session that is not shows every
/// `pg_lock_status` scan never executed. Without the gate they run on every
/// look, copying the whole lock table.
#[tokio::test]
async fn the_lock_wait_look_reads_no_pg_locks_while_nothing_waits() {
    setup_owned();
    let _foreign = foreign_advisory_locks(url(), "scans-foreign-2", 1 << 42, FOREIGN).await;
    let idle = session(url(), "scans-idle").await;
    let idle_pid = backend_pid(&idle).await;
    let s = session(url(), "scans-explain").await;
    s.batch_execute(&format!(
        "PREPARE lock_wait(int4) AS {}",
        pglock_runtime::__private::statements::LOCK_WAIT
    ))
    .await
    .unwrap();
    let plan = |pid: i32| {
        let s = &s;
        async move {
            s.simple_query(&format!(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE lock_wait({pid})"
            ))
            .await
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect::<Vec<_>>()
        }
    };
    let not_waiting = plan(idle_pid).await;
    let scans: Vec<_> = not_waiting
        .iter()
        .filter(|l| l.contains("pg_lock_status"))
        .collect();
    assert!(!scans.is_empty(), "{not_waiting:#?}");
    assert!(
        scans.iter().all(|l| l.contains("never executed")),
        "{not_waiting:#?}"
    );

    // A waiting session is still looked at: the look finds its lock request.
    let key = unique_key();
    let (_holder, _) = advisory_holder(url(), "scans-holder", key).await;
    let waiter = session(url(), "scans-waiter").await;
    let waiter_pid = backend_pid(&waiter).await;
    let wait = tokio::spawn(async move {
        let _ = waiter.execute("SELECT pg_advisory_lock($1)", &[&key]).await;
        waiter
    });
    let obs = observer().await;
    wait_until_blocked(&obs, waiter_pid).await;
    let rows = s
        .simple_query(&format!("EXECUTE lock_wait({waiter_pid})"))
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
        "the waiting session's request is seen"
    );
    terminate(&obs, waiter_pid).await;
    let _ = wait.await;
}
