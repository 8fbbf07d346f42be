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
