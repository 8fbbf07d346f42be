//! The sync API, called outside any runtime and from inside multi-thread and
//! current-thread tokio runtimes.

use std::time::Duration;

use pglock_runtime::{advisory, blocking, lock_timeout, ErrorKind, LockKey};
use pglock_tests::*;

/// Server-side observation from synchronous code, on a thread of its own with a
/// runtime of its own (whatever runtime the caller is in).
fn observe<T: Send, F: std::future::Future<Output = T> + Send>(
    f: impl FnOnce(tokio_postgres::Client) -> F + Send,
) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async { f(observer().await).await })
        })
        .join()
        .unwrap()
    })
}

fn held(k: LockKey) -> Vec<i32> {
    observe(move |obs| async move { holders(&obs, k).await })
}

/// Everything the sync API offers, from whatever context calls it.
fn exercise_sync_api() {
    setup();
    let key = unique_key();
    let k = LockKey::Int(key);

    // Guard API.
    let g = advisory(key).acquire_blocking().unwrap();
    let pid = g.connection().backend_pid();
    assert_eq!(held(k), vec![pid]);
    let err = advisory(key).no_wait().acquire_blocking().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert_eq!(err.holders()[0].pid, pid);
    assert!(advisory(key)
        .no_wait()
        .try_acquire_blocking()
        .unwrap()
        .is_none());
    g.release().unwrap();
    assert!(held(k).is_empty());

    // Scope API: the body's connection is the lock holder.
    let seen = advisory(key)
        .run_blocking(|| {
            let db = blocking::connection().unwrap();
            let now_held = held(k);
            assert_eq!(now_held, vec![db.backend_pid()]);
            db.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0)
        })
        .unwrap();
    assert_eq!(seen, 1);
    assert!(held(k).is_empty());

    // lock_timeout scope.
    let lt = lock_timeout(Duration::from_secs(2))
        .scope_blocking(|| {
            let db = blocking::connection().unwrap();
            db.query_one("SHOW lock_timeout", &[])
                .unwrap()
                .get::<_, String>(0)
        })
        .unwrap();
    assert_eq!(lt, "2s");

    // A dropped guard releases before drop returns.
    let g = advisory(key).xact().acquire_blocking().unwrap();
    drop(g);
    assert!(held(k).is_empty());

    // A panic in the body releases the lock.
    let r = std::panic::catch_unwind(|| advisory(key).run_blocking(|| panic!("boom")));
    assert!(r.is_err());
    observe(move |obs| async move { assert_released(&obs, k).await });
}

#[test]
fn outside_any_runtime() {
    exercise_sync_api();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_multi_thread_runtime() {
    exercise_sync_api();
}

#[tokio::test(flavor = "current_thread")]
async fn inside_a_current_thread_runtime() {
    exercise_sync_api();
}

/// Sync code inside an async scope, on the only worker of a multi-thread runtime:
/// the scope connection is driven by that very runtime, so the blocking call must
/// hand the worker's tasks (the connection's driver among them) to another thread
/// rather than park on a reply only that worker could deliver. Run on a thread of
/// its own, so that a deadlock fails the test instead of hanging it.
#[test]
fn blocking_calls_on_a_connection_the_blocked_worker_drives() {
    setup();
    let key = unique_key();
    let k = LockKey::Int(key);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Spawned: on the runtime's worker, not on this thread.
        let task = async move {
            advisory(key)
                .run(async move {
                    let db = blocking::connection().unwrap();
                    let one: i32 = db.query_one("SELECT 1", &[]).unwrap().get(0);
                    assert_eq!(one, 1);
                    assert_eq!(held(k), vec![db.backend_pid()]);
                    db.backend_pid()
                })
                .await
                .unwrap()
        };
        let pid = rt.block_on(async move { tokio::spawn(task).await.unwrap() });
        tx.send(pid).unwrap();
    });
    let pid = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the blocking call deadlocked (or panicked)");
    assert!(pid > 0);
    observe(move |obs| async move { assert_released(&obs, k).await });
}
