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
