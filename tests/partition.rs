//! Silent network partitions, made with the testkit's loopback partition proxy:
//! a holder whose path to the server stops forwarding (no FIN, sockets open)
//! while the server ends its session and hands the lock to someone else must
//! find out within the alias's answer deadline — `lost()`, `is_lost()`,
//! `on_lost = cancel` — and its `release()` must not hang.

use std::time::{Duration, Instant};

use pglock_runtime::{advisory, pool_status, register, Config, ErrorKind, LockKey};
use pglock_testkit::PartitionProxy;
use pglock_tests::*;

/// An alias whose sessions go through a new proxy to the harness's cluster,
/// with a 200 ms heartbeat (answer deadline: 3 s).
fn partitioned(name: &'static str) -> (&'static str, PartitionProxy) {
    let cluster = pglock_testkit::shared_cluster();
    let proxy = PartitionProxy::start(cluster.port()).expect("proxy starts");
    let config = Config::from_url(&proxy.url_for(&cluster.url()))
        .unwrap()
        .heartbeat(Some(Duration::from_millis(200)))
        .max_size(2);
    assert_eq!(config.answer_deadline(), Duration::from_secs(3));
    register(name, config).unwrap();
    (name, proxy)
}

/// The partition the audit found: the path goes silent, the server ends the
/// holder's session, and another session takes the key.
async fn partition_and_take_over(proxy: &PartitionProxy, key: i64) -> tokio_postgres::Client {
    let obs = observer().await;
    let pid = within(10, "holder on the server", async {
        loop {
            if let Some(&pid) = holders(&obs, LockKey::Int(key)).await.first() {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    proxy.pause();
    terminate(&obs, pid).await;
    assert!(
        wait_until_gone(&obs, pid).await,
        "the holder's backend ended"
    );
    let (other, _) = advisory_holder(url(), "partition-new-holder", key).await;
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_is_a_lost_lock_within_the_deadline() {
    setup_owned();
    let (alias, proxy) = partitioned("partition-guard");
    let key = unique_key();
    let guard = advisory(key).using(alias).acquire().await.unwrap();
    let _new_holder = partition_and_take_over(&proxy, key).await;
    let cut = Instant::now();
    let lost = within(10, "lost() resolves", guard.lost()).await;
    let noticed = cut.elapsed();
    assert_eq!(lost.kind(), ErrorKind::LockLost, "{lost}");
    assert!(
        lost.to_string()
            .contains("did not answer the heartbeat check"),
        "{lost}"
    );
    assert!(guard.is_lost());
    // Detected after the deadline (3 s) plus at most one interval and a tick.
    assert!(
        noticed < Duration::from_secs(6),
        "noticed after {noticed:?}"
    );
    let released = within(10, "release() returns", guard.release()).await;
    assert!(released.is_err(), "the release cannot have succeeded");
    println!("partition noticed after {noticed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lost_cancel_stops_the_body_in_a_silent_partition() {
    setup_owned();
    let (alias, proxy) = partitioned("partition-cancel");
    let key = unique_key();
    let body = tokio::spawn(async move {
        advisory(key)
            .cancel_on_lost()
            .using(alias)
            .run(tokio::time::sleep(Duration::from_secs(60)))
            .await
    });
    let _new_holder = partition_and_take_over(&proxy, key).await;
    let out = within(10, "the body is cancelled", body).await.unwrap();
    let e = out.expect_err("the body was cancelled");
    assert_eq!(e.kind(), ErrorKind::LockLost, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_a_silent_path_returns_within_the_deadline() {
    setup_owned();
    let (alias, proxy) = partitioned("partition-release");
    let key = unique_key();
    let guard = advisory(key).using(alias).acquire().await.unwrap();
    proxy.pause();
    let started = Instant::now();
    let e = within(10, "release() returns", guard.release())
        .await
        .expect_err("no answer, no release");
    assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{e}");
    assert!(e.to_string().contains("did not answer the release"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The session is closed: nothing of it stays in the pool.
    assert_eq!(pool_status(alias).unwrap().open, 0);
    proxy.resume();
    // And the alias works again once the path does.
    within(
        10,
        "a new lock",
        advisory(unique_key()).using(alias).run(async {}),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_connection_returned_on_a_silent_path_is_closed_not_kept() {
    setup_owned();
    let (alias, proxy) = partitioned("partition-return");
    let conn = pglock_runtime::connection_for(alias).await.unwrap();
    conn.batch_execute("SELECT 1").await.unwrap();
    proxy.pause();
    // Back to the pool: the return check runs, and gets no answer.
    drop(conn);
    let started = Instant::now();
    let closed = within(10, "the connection is closed", async {
        while pool_status(alias).unwrap().open > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let _: () = closed;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    proxy.resume();
}

/// Issue 15.2: a holder cut off silently is also ended by the server, so that
/// its lock is freed even though its socket stays open — but only after the
/// holder gave up by itself: the server's idle timers on a lock session are
/// twice the client's answer deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_ends_a_silent_holder_after_the_holder_gave_up() {
    setup_owned();
    let (alias, proxy) = partitioned("partition-server-timers");
    let obs = observer().await;
    let key = unique_key();
    let guard = advisory(key).using(alias).acquire().await.unwrap();
    let pid = holders(&obs, LockKey::Int(key)).await[0];
    // Held for longer than an interval: the first heartbeat check set the timers.
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.pause();
    let cut = Instant::now();
    within(10, "the holder notices", guard.lost()).await;
    let client = cut.elapsed();
    let gone = within(20, "the server ends the session", async {
        while !is_gone(&obs, pid).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let _: () = gone;
    let server = cut.elapsed();
    println!("holder gave up after {client:?}, the server ended its session after {server:?}");
    assert!(
        client < server,
        "the holder first: {client:?} vs {server:?}"
    );
    // Nobody terminated it, and its lock is free.
    let (_next, _) = advisory_holder(url(), "partition-next-holder", key).await;
    drop(guard);
    proxy.resume();
}

/// The timers go with the lock: a session back in the pool after a long-held
/// lock idles there longer than them and is still alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_session_outlives_the_timers_of_its_last_lock() {
    setup_owned();
    let (alias, _proxy) = partitioned("partition-timers-reset");
    let key = unique_key();
    let obs = observer().await;
    let guard = advisory(key).using(alias).acquire().await.unwrap();
    // Not through the guard: a connection user code had gets the full reset of
    // the return check; this one goes back on pglock's own undo.
    let pid = holders(&obs, LockKey::Int(key)).await[0];
    tokio::time::sleep(Duration::from_millis(600)).await;
    guard.release().await.unwrap();
    // Longer than the timers (6 s) of the lock it held.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let conn = pglock_runtime::connection_for(alias).await.unwrap();
    assert_eq!(conn.backend_pid(), pid, "the same session, still alive");
    conn.batch_execute("SELECT 1").await.unwrap();
}
