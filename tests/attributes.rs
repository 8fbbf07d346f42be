//! The attributes end to end (REFERENCE.md §7 scenarios through `#[advisory_lock]`,
//! `#[lock_timeout]` and `#[prioritize]`), observed from `pg_locks`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pglock_runtime::{
    advisory, advisory_lock, connection, lock_timeout, prioritize, Error, ErrorKind, LockKey,
};
use pglock_tests::*;

mod jobs {
    use super::*;

    /// Records the scope connection's pid and what the server shows for this
    /// function's default key while the body runs.
    #[advisory_lock]
    pub(super) async fn nightly() -> Result<(i32, Vec<i32>), Error> {
        let obs = observer().await;
        let pid = connection().await?.backend_pid();
        Ok((
            pid,
            holders(&obs, LockKey::string("attributes::jobs::nightly")).await,
        ))
    }
}

/// Scenario 7: the default key is the module path and the function name.
#[tokio::test]
async fn default_key_is_module_path_and_name() {
    setup_owned();
    let (pid, held) = jobs::nightly().await.unwrap();
    assert_eq!(held, vec![pid]);
    let obs = observer().await;
    assert_released(&obs, LockKey::string("attributes::jobs::nightly")).await;
}

#[advisory_lock(key = key, timeout = 0, on_fail = skip)]
async fn skip_if_busy(key: i64, ran: &AtomicBool) {
    ran.store(true, Ordering::SeqCst);
}

#[advisory_lock(key = key, timeout = 0)]
async fn raise_if_busy(key: i64) -> Result<u8, Error> {
    Ok(1)
}

#[advisory_lock(key = key, timeout = "300ms")]
async fn bounded(key: i64) -> Result<(), Error> {
    Ok(())
}

/// Scenarios 1 and 7: skip does not run the body; raise names the holder.
#[tokio::test]
async fn skip_and_raise() {
    setup_owned();
    let key = unique_key();
    let ran = AtomicBool::new(false);
    skip_if_busy(key, &ran).await;
    assert!(ran.swap(false, Ordering::SeqCst), "free: the body runs");
    let holder = advisory(key).acquire().await.unwrap();
    let pid = holder.connection().unwrap().backend_pid();
    skip_if_busy(key, &ran).await;
    assert!(!ran.load(Ordering::SeqCst), "busy: the body is skipped");
    let err = raise_if_busy(key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(
        err.to_string().contains(&format!("held by pid {pid}")),
        "{err}"
    );
    let started = std::time::Instant::now();
    let err = bounded(key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout);
    assert!(started.elapsed() >= Duration::from_millis(300));
    holder.release().await.unwrap();
    assert_eq!(raise_if_busy(key).await.unwrap(), 1);
}

#[advisory_lock(key = ("sync", key), timeout = 0)]
fn sync_locked(key: i64) -> Result<i32, Error> {
    let db = pglock_runtime::blocking::connection()?;
    Ok(db.backend_pid())
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_functions_work_inside_a_runtime() {
    setup_owned();
    let key = unique_key();
    let pid = sync_locked(key).unwrap();
    assert!(pid > 0);
}

// ---------------------------------------------------------------------------
// Scenario 1 and 2 through the attribute: exclusive and shared.

/// Holds `key` through the `"other"` alias (another pool, as another process).
#[advisory_lock(key = key, using = "other")]
async fn hold_exclusive_elsewhere(
    key: i64,
    hold: tokio::sync::oneshot::Receiver<()>,
) -> Result<i32, Error> {
    let pid = pglock_runtime::connection_for("other").await?.backend_pid();
    let _ = hold.await;
    Ok(pid)
}

#[advisory_lock(key = key)]
async fn hold_exclusive(key: i64, hold: tokio::sync::oneshot::Receiver<()>) -> Result<i32, Error> {
    let pid = connection().await?.backend_pid();
    let _ = hold.await;
    Ok(pid)
}

#[advisory_lock(key = key, shared, timeout = 0)]
async fn shared_no_wait(key: i64) -> Result<i32, Error> {
    Ok(connection().await?.backend_pid())
}

#[tokio::test]
async fn exclusive_then_waiting_caller_gets_it() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let (tx, rx) = tokio::sync::oneshot::channel();
    other();
    let a = tokio::spawn(hold_exclusive_elsewhere(key, rx));
    while holders(&obs, LockKey::Int(key)).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(raise_if_busy(key).await.unwrap_err().is_busy());
    assert!(shared_no_wait(key).await.unwrap_err().is_busy());
    let (_tx2, rx2) = tokio::sync::oneshot::channel::<()>();
    let b = tokio::spawn(async move {
        // Waits without limit, then holds until the test ends.
        let _keep = rx2;
        let (_t, r) = tokio::sync::oneshot::channel::<()>();
        drop(_t);
        hold_exclusive(key, r).await
    });
    let waiter = wait_for_waiter(&obs, LockKey::Int(key)).await;
    tx.send(()).unwrap();
    a.await.unwrap().unwrap();
    assert_eq!(within(10, "B acquires", b).await.unwrap().unwrap(), waiter);
    assert_released(&obs, LockKey::Int(key)).await;
}

#[advisory_lock(key = key, shared)]
async fn shared_hold(key: i64, barrier: std::sync::Arc<tokio::sync::Barrier>) -> Result<(), Error> {
    barrier.wait().await;
    barrier.wait().await;
    Ok(())
}

#[tokio::test]
async fn shared_holders_coexist() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(3));
    let t1 = tokio::spawn(shared_hold(key, barrier.clone()));
    let t2 = tokio::spawn(shared_hold(key, barrier.clone()));
    within(10, "both shared holders inside", barrier.wait()).await;
    let rows = advisory_rows(&obs, LockKey::Int(key)).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r.granted && r.mode == "ShareLock"),
        "{rows:?}"
    );
    assert!(raise_if_busy(key).await.unwrap_err().is_busy());
    barrier.wait().await;
    t1.await.unwrap().unwrap();
    t2.await.unwrap().unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
}

// ---------------------------------------------------------------------------
// Scenarios 3 and 6: xact commits on success, rolls back on error, `?`, panic.

async fn count(table: &str) -> i64 {
    query_value(&observer().await, &format!("SELECT count(*) FROM {table}")).await
}

#[advisory_lock(key = key, xact)]
async fn xact_insert(key: i64, table: &str, fail: bool) -> Result<(), Error> {
    let db = connection().await?;
    db.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
        .await?;
    let obs = observer().await;
    assert_eq!(
        holders(&obs, LockKey::Int(key)).await,
        vec![db.backend_pid()]
    );
    if fail {
        // A database error in the body.
        db.execute("SELECT 1/0", &[]).await?;
    }
    Ok(())
}

#[advisory_lock(key = key, xact)]
fn xact_sync(key: i64, table: &str, mode: u8) -> Result<u8, Error> {
    let db = pglock_runtime::blocking::connection()?;
    db.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])?;
    match mode {
        0 => return Ok(0), // early return: commits
        1 => {
            db.execute("SELECT 1/0", &[])?; // `?`: rolls back
        }
        2 => panic!("body panicked"), // rolls back
        _ => {}
    }
    Ok(mode)
}

#[tokio::test(flavor = "multi_thread")]
async fn xact_commits_or_rolls_back_with_the_body() {
    setup_owned();
    let obs = observer().await;
    let t = fresh_table(&obs, "attr_xact").await;
    obs.batch_execute(&format!("DELETE FROM {t}"))
        .await
        .unwrap();
    let key = unique_key();
    xact_insert(key, &t, false).await.unwrap();
    assert_eq!(count(&t).await, 1);
    let err = xact_insert(key, &t, true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Database);
    assert_eq!(count(&t).await, 1, "rolled back");
    assert_released(&obs, LockKey::Int(key)).await;

    let t2 = t.clone();
    tokio::task::spawn_blocking(move || {
        assert_eq!(xact_sync(key, &t2, 0).unwrap(), 0);
        assert!(xact_sync(key, &t2, 1).is_err());
        let r = std::panic::catch_unwind(|| xact_sync(key, &t2, 2));
        assert!(r.is_err());
        assert_eq!(xact_sync(key, &t2, 3).unwrap(), 3);
    })
    .await
    .unwrap();
    assert_eq!(
        count(&t).await,
        3,
        "early return and normal end commit; `?` and panic roll back"
    );
    assert_released(&obs, LockKey::Int(key)).await;
}

// ---------------------------------------------------------------------------
// Scenario 4: a skipped lock inside an outer transaction leaves it usable.

#[advisory_lock(key = key, timeout = "100ms", on_fail = skip)]
async fn inner_skip(key: i64) -> Option<u8> {
    Some(1)
}

#[lock_timeout("7s")]
async fn outer_transaction(key: i64, table: &str) -> Result<(Option<u8>, i64, String), Error> {
    let db = connection().await?;
    db.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await?;
    let skipped = inner_skip(key).await;
    let n: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0);
    let lt: String = db.query_one("SHOW lock_timeout", &[]).await?.get(0);
    db.batch_execute("COMMIT").await?;
    Ok((skipped, n, lt))
}

#[tokio::test]
async fn skipped_lock_inside_outer_transaction() {
    setup_owned();
    let obs = observer().await;
    let t = fresh_table(&obs, "attr_outer").await;
    let key = unique_key();
    let holder = advisory(key).acquire().await.unwrap();
    let (skipped, n, lt) = outer_transaction(key, &t).await.unwrap();
    assert_eq!(skipped, None);
    assert_eq!(n, 2, "the transaction is usable after the skip");
    assert_eq!(lt, "7s");
    holder.release().await.unwrap();
}

// ---------------------------------------------------------------------------
// Scenario 5: nested #[lock_timeout] scopes restore in order.

#[lock_timeout("2s")]
async fn lt_inner() -> Result<String, Error> {
    let db = connection().await?;
    Ok(show_lock_timeout(&db).await)
}

#[lock_timeout(1)]
async fn lt_outer() -> Result<Vec<String>, Error> {
    let db = connection().await?;
    let mut seen = vec![show_lock_timeout(&db).await];
    seen.push(lt_inner().await?);
    seen.push(show_lock_timeout(&db).await);
    Ok(seen)
}

#[lock_timeout(none)]
fn lt_sync() -> Result<String, Error> {
    let db = pglock_runtime::blocking::connection()?;
    Ok(db.query_one("SHOW lock_timeout", &[])?.get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_lock_timeouts_restore() {
    setup_owned();
    assert_eq!(lt_outer().await.unwrap(), vec!["1s", "2s", "1s"]);
    assert_eq!(
        tokio::task::spawn_blocking(lt_sync).await.unwrap().unwrap(),
        "0"
    );
}

// ---------------------------------------------------------------------------
// Scenario 8: every key kind through the attribute, seen in pg_locks.

#[advisory_lock(key = (a, b))]
async fn pair_key(a: i32, b: i32) -> Result<Vec<i32>, Error> {
    Ok(holders(&observer().await, LockKey::Pair(a, b)).await)
}

#[advisory_lock(key = "attr sqlx key", hash = sqlx)]
async fn sqlx_key() -> Result<Vec<i32>, Error> {
    Ok(holders(
        &observer().await,
        pglock_runtime::advisory_with("attr sqlx key", pglock_runtime::KeyHash::Sqlx).key(),
    )
    .await)
}

#[advisory_lock(key = ("invoice", id), hash = postgres_lock)]
async fn tuple_key(id: i64) -> Result<Vec<i32>, Error> {
    let key = pglock_runtime::advisory_with(
        format!("invoice:{id}"),
        pglock_runtime::KeyHash::PostgresLock,
    )
    .key();
    Ok(holders(&observer().await, key).await)
}

#[tokio::test]
async fn key_kinds_through_the_attribute() {
    setup_owned();
    assert_eq!(pair_key(-5, 9).await.unwrap().len(), 1);
    assert_eq!(sqlx_key().await.unwrap().len(), 1);
    assert_eq!(tuple_key(unique_key()).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// Scenario 11: one annotated function called concurrently from many tasks.

#[advisory_lock(key = key)]
async fn critical(key: i64, inside: std::sync::Arc<AtomicBool>) -> Result<(), Error> {
    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
    tokio::time::sleep(Duration::from_millis(2)).await;
    inside.store(false, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_exclude_each_other() {
    setup_owned();
    let key = unique_key();
    let inside = std::sync::Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let inside = inside.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    critical(key, inside.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        within(60, "tasks", t).await.unwrap();
    }
    assert_released(&observer().await, LockKey::Int(key)).await;
}

// ---------------------------------------------------------------------------
// Panics release; on_lost = cancel stops the body; methods; test attributes.

#[advisory_lock(key = key)]
async fn panicking(key: i64) -> Result<(), Error> {
    panic!("boom")
}

#[tokio::test]
async fn panics_release_the_lock() {
    setup_owned();
    let key = unique_key();
    let r = tokio::spawn(panicking(key)).await;
    assert!(r.unwrap_err().is_panic());
    assert_released(&observer().await, LockKey::Int(key)).await;
}

#[advisory_lock(key = key, on_lost = cancel)]
async fn long_job(key: i64, finished: std::sync::Arc<AtomicBool>) -> Result<(), Error> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    finished.store(true, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn on_lost_cancel_stops_the_body() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let finished = std::sync::Arc::new(AtomicBool::new(false));
    let job = tokio::spawn(long_job(key, finished.clone()));
    let pid = wait_for_holder(&obs, LockKey::Int(key)).await;
    terminate(&obs, pid).await;
    let err = within(10, "job cancelled", job).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost);
    assert!(!finished.load(Ordering::SeqCst));
}

struct Worker {
    id: i64,
}

impl Worker {
    #[advisory_lock(key = ("worker", self.id))]
    async fn run(&self) -> Result<Vec<i32>, Error> {
        let key = pglock_runtime::advisory(("worker", self.id)).key();
        Ok(holders(&observer().await, key).await)
    }
}

#[tokio::test]
async fn methods_lock_per_instance() {
    setup_owned();
    let w = Worker { id: unique_key() };
    assert_eq!(w.run().await.unwrap().len(), 1);
}

// The lock is taken before the body runs, so these two cannot call `setup()`
// themselves: `tokio_test_in_either_order` runs them after it.
#[tokio::test]
#[advisory_lock(key = 424_001, timeout = "5s")]
#[ignore = "run by tokio_test_in_either_order once the alias is configured"]
async fn tokio_test_above() -> Result<(), Error> {
    let held = holders(&observer().await, LockKey::Int(424_001)).await;
    assert_eq!(held, vec![connection().await?.backend_pid()]);
    Ok(())
}

#[advisory_lock(key = 424_002, timeout = "5s")]
#[tokio::test]
#[ignore = "run by tokio_test_in_either_order once the alias is configured"]
async fn tokio_test_below() -> Result<(), Error> {
    let held = holders(&observer().await, LockKey::Int(424_002)).await;
    assert_eq!(held, vec![connection().await?.backend_pid()]);
    Ok(())
}

#[tracing::instrument]
#[advisory_lock(key = key)]
async fn instrumented_above(key: i64) -> Result<usize, Error> {
    Ok(holders(&observer().await, LockKey::Int(key)).await.len())
}

#[advisory_lock(key = key)]
#[tracing::instrument]
async fn instrumented_below(key: i64) -> Result<usize, Error> {
    Ok(holders(&observer().await, LockKey::Int(key)).await.len())
}

#[tokio::test]
async fn with_tracing_instrument_in_either_order() {
    setup_owned();
    assert_eq!(instrumented_above(unique_key()).await.unwrap(), 1);
    assert_eq!(instrumented_below(unique_key()).await.unwrap(), 1);
}

#[test]
fn tokio_test_in_either_order() {
    setup_owned();
    tokio_test_above().unwrap();
    tokio_test_below().unwrap();
}

/// The skip reason is a tracing event that names the key and the holder.
#[tokio::test]
async fn skip_emits_an_event_naming_key_and_holder() {
    setup_owned();
    let key = unique_key();
    let holder = advisory(key).acquire().await.unwrap();
    let pid = holder.connection().unwrap().backend_pid();
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = {
        let buf = buf.clone();
        move || BufWriter(buf.clone())
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let ran = AtomicBool::new(false);
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        skip_if_busy(key, &ran).await;
    }
    let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let line = out
        .lines()
        .find(|l| l.contains("skipped"))
        .unwrap_or_else(|| panic!("no skip event in {out}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains(&key.to_string()), "{line}");
    assert!(line.contains(&format!("pid {pid}")), "{line}");
    assert!(line.contains("attributes::skip_if_busy"), "{line}");
    holder.release().await.unwrap();
}

struct BufWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for BufWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// #[prioritize] end to end: a blocker of the body is terminated.

#[prioritize(interval = "200ms")]
#[lock_timeout("20s")]
async fn prioritized_alter(table: String) -> Result<(), Error> {
    let db = connection().await?;
    db.batch_execute(&format!("ALTER TABLE {table} ADD COLUMN z int"))
        .await?;
    Ok(())
}

#[advisory_lock(key = key)]
#[prioritize(interval = "200ms", timeout = "20s")]
async fn prioritized_lock(key: i64) -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(key = key)]
#[prioritize(interval = "100ms", timeout = "700ms")]
async fn prioritized_sparing_superusers(key: i64) -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(key = key)]
#[prioritize(interval = "100ms", timeout = "20s", signal_superusers)]
async fn prioritized_over_superusers(key: i64) -> Result<(), Error> {
    Ok(())
}

/// `signal_superusers` on the attribute: a superuser's session is spared
/// without it and terminated with it.
#[tokio::test]
async fn prioritize_attribute_signals_superusers_only_when_told() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let (_holder, holder_pid) = advisory_holder(url(), "attr-superuser", key).await;
    let e = prioritized_sparing_superusers(key).await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(!is_gone(&obs, holder_pid).await);
    within(20, "opted in", prioritized_over_superusers(key))
        .await
        .unwrap();
    assert_gone(&obs, holder_pid).await;
}

#[tokio::test]
async fn prioritize_attribute_terminates_blockers() {
    setup_owned();
    let obs = observer().await;
    let t = fresh_table(&obs, "attr_prio").await;
    let (_reader, reader_pid) = table_reader(&app_url(), "attr-reader", &t).await;
    within(20, "alter gets through", prioritized_alter(t))
        .await
        .unwrap();
    assert_gone(&obs, reader_pid).await;

    // An advisory-lock blocker of the acquisition itself.
    let key = unique_key();
    let (_holder, holder_pid) = advisory_holder(&app_url(), "attr-holder", key).await;
    within(20, "lock gets through", prioritized_lock(key))
        .await
        .unwrap();
    assert_gone(&obs, holder_pid).await;
}

#[advisory_lock(key = key)]
async fn sleeps_holding(key: i64) -> Result<(), Error> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

/// `tokio::time::timeout` around an annotated call, and `JoinHandle::abort` of a
/// task inside one: the lock is released by the backstop.
#[tokio::test]
async fn timeout_and_abort_around_annotated_calls_release() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let r = tokio::time::timeout(Duration::from_millis(300), sleeps_holding(key)).await;
    assert!(r.is_err());
    assert_released(&obs, LockKey::Int(key)).await;
    let t = tokio::spawn(sleeps_holding(key));
    while holders(&obs, LockKey::Int(key)).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.abort();
    assert_released(&obs, LockKey::Int(key)).await;
}

#[lock_timeout("300ms")]
#[advisory_lock(key = key)]
async fn bounded_by_lock_timeout(key: i64) -> Result<(), Error> {
    Ok(())
}

/// `#[lock_timeout]` bounds the acquisition also when the holder is a task of this
/// process (the wait then happens in the in-process queue).
#[tokio::test]
async fn lock_timeout_bounds_a_wait_behind_a_local_holder() {
    setup_owned();
    let key = unique_key();
    let holder = advisory(key).acquire().await.unwrap();
    let started = std::time::Instant::now();
    let err = within(10, "bounded", bounded_by_lock_timeout(key))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(err.holders().len(), 1, "{err}");
    holder.release().await.unwrap();
    bounded_by_lock_timeout(key).await.unwrap();
}

/// An alias whose server refuses connections: a loopback port nobody listens on.
fn unreachable_alias() -> &'static str {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let port = pglock_testkit::free_port();
        let config = pglock_runtime::Config::from_url(&format!(
            "postgres://nobody@127.0.0.1:{port}/none?connect_timeout=2"
        ))
        .unwrap()
        .checkout_timeout(Duration::from_secs(3));
        pglock_runtime::register("unreachable", config).unwrap();
    });
    "unreachable"
}

#[advisory_lock(timeout = 0, on_fail = skip, using = "unreachable")]
async fn skip_on_a_broken_alias(ran: &AtomicBool) {
    ran.store(true, Ordering::SeqCst);
}

#[advisory_lock(timeout = 0, on_fail = skip, on_error = raise, using = "unreachable")]
async fn skip_busy_raise_errors(ran: &AtomicBool) -> Result<(), Error> {
    ran.store(true, Ordering::SeqCst);
    Ok(())
}

#[advisory_lock(key = key, timeout = 0, on_fail = skip, on_error = raise)]
fn sync_skip_busy_raise_errors(key: i64) -> Result<Option<u8>, Error> {
    Ok(Some(1))
}

/// Issue 16: `on_fail = skip` must not hide a broken fleet. A failure other
/// than a busy lock is an error-level event; `on_error = raise` returns it, and
/// still skips a busy lock.
#[tokio::test]
async fn skip_is_loud_about_errors_and_on_error_raise_returns_them() {
    setup();
    unreachable_alias();
    let ran = AtomicBool::new(false);
    let (guard, events) = capture_events();
    skip_on_a_broken_alias(&ran).await;
    drop(guard);
    assert!(!ran.load(Ordering::SeqCst));
    let text = events.text();
    assert!(
        text.contains("ERROR") && text.contains("skipped: could not acquire the lock"),
        "{text}"
    );
    let e = skip_busy_raise_errors(&ran)
        .await
        .expect_err("the connection error");
    assert!(!e.is_busy() && !ran.load(Ordering::SeqCst), "{e}");
    // A busy lock is still a skip.
    let key = unique_key();
    let (_holder, _) = advisory_holder(url(), "on-error-holder", key).await;
    let busy = tokio::task::spawn_blocking(move || sync_skip_busy_raise_errors(key))
        .await
        .unwrap();
    assert_eq!(busy.unwrap(), None, "busy skips");
}
