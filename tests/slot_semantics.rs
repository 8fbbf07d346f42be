//! The semantics of scheduled slots (issue 12, item 4), each observed from the
//! server: pglock's record of runs (`pglock.runs`), `pg_locks` and
//! `pg_stat_activity`, read through a plain observer connection.
//!
//! Every test uses keys and slot labels of its own, so that tests do not meet.
//!
//! Two tests fail on purpose until the runtime is fixed, each naming the bug it
//! shows: `an_xact_run_that_fails_first_on_its_connection_keeps_its_record` (the
//! body's savepoint reaches the server before the claim on a connection that
//! has not prepared the claim yet, so a failed first run loses its record) and
//! `a_shared_slot_in_run_blocking_is_a_usage_error` (`run_blocking` skips the
//! slot checks of `run`, and a debug build panics in `advisory::lock`).

use std::panic::AssertUnwindSafe;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use pglock_runtime::{
    advisory, advisory_lock, blocking, connection, connection_for, register, Config, Error,
    ErrorKind, LockKey, RunOutcome,
};
use pglock_tests::*;

/// A body's own failure, told apart from pglock's errors.
#[derive(Debug)]
enum JobError {
    /// pglock (or the database) failed.
    Pglock(Error),
    /// The body decided to fail.
    Failed,
}

impl From<Error> for JobError {
    fn from(e: Error) -> JobError {
        JobError::Pglock(e)
    }
}

impl JobError {
    fn pglock(self) -> Error {
        match self {
            JobError::Pglock(e) => e,
            JobError::Failed => panic!("expected pglock's error, got the body's failure"),
        }
    }
}

/// The application name of the `named()` alias.
fn app_name() -> String {
    format!("slot-semantics-{}", std::process::id())
}

/// An alias whose sessions carry [`app_name`], so that "who ran it" is checkable.
fn named() -> &'static str {
    static DONE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    DONE.get_or_init(|| named_alias("sem-named", &app_name()))
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn this_pid() -> Option<i32> {
    Some(std::process::id() as i32)
}

/// A slot label no other test uses.
fn label(what: &str) -> String {
    format!("{what}-{}", unique_key().unsigned_abs())
}

// ---------------------------------------------------------------------------
// 1. A body that returns `Err` still counts as its slot's run.

#[advisory_lock(key = key, slot = slot, timeout = 0, on_fail = skip, using = "sem-named")]
async fn failing_skip(key: i64, slot: &str, runs: &AtomicUsize) -> Result<bool, JobError> {
    runs.fetch_add(1, Ordering::SeqCst);
    Err(JobError::Failed)
}

#[advisory_lock(key = key, slot = slot, timeout = 0, using = "sem-named")]
async fn failing_raise(key: i64, slot: &str, runs: &AtomicUsize) -> Result<bool, JobError> {
    runs.fetch_add(1, Ordering::SeqCst);
    Err(JobError::Failed)
}

#[tokio::test]
async fn a_failed_run_uses_up_its_slot() {
    setup_owned();
    named();
    let obs = observer().await;
    let (key, slot) = (unique_key(), label("failed"));
    let runs = AtomicUsize::new(0);

    assert!(matches!(
        failing_skip(key, &slot, &runs).await,
        Err(JobError::Failed)
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let rows = runs_of(&obs, LockKey::Int(key)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (row.slot.as_str(), row.outcome.as_str(), row.attempt),
        (slot.as_str(), "failed", 1)
    );
    assert!(row.finished, "finished_at set: {row:?}");
    assert_eq!(row.job, "slot_semantics::failing_skip");
    assert_eq!(row.application_name, app_name());
    assert_eq!(row.client_pid, this_pid());
    assert_released(&obs, LockKey::Int(key)).await;

    // on_fail = skip: the skipped value, without running the body.
    assert!(matches!(failing_skip(key, &slot, &runs).await, Ok(false)));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body did not run again");

    // raise: AlreadyRan, naming the failed run.
    let e = failing_raise(key, &slot, &runs).await.unwrap_err().pglock();
    assert_eq!(e.kind(), ErrorKind::AlreadyRan, "{e:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body did not run again");
    let previous = e.previous_run().expect("AlreadyRan names the earlier run");
    assert_eq!(previous.slot, slot);
    assert_eq!(previous.application_name, app_name());
    assert_eq!(previous.host, this_host());
    assert!(!previous.host.is_empty());
    assert_eq!(previous.client_pid, this_pid());
    assert_eq!(previous.outcome, RunOutcome::Failed);
    assert!(previous.started_at.is_some() && previous.finished_at.is_some());

    // Still one row, unchanged, and nothing held.
    assert_eq!(runs_of(&obs, LockKey::Int(key)).await, rows);
    assert_released(&obs, LockKey::Int(key)).await;
}

// ---------------------------------------------------------------------------
// 2. A body that panics counts too, and the panic reaches the caller.

#[advisory_lock(key = key, slot = slot)]
async fn panicking(key: i64, slot: &str, runs: &AtomicUsize) -> Result<(), Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    panic!("the job panicked on purpose");
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_panicked_run_uses_up_its_slot_and_the_panic_propagates() {
    setup_owned();
    let obs = observer().await;
    let (key, slot) = (unique_key(), label("panicked"));
    let k = LockKey::Int(key);
    let runs = AtomicUsize::new(0);

    let p = AssertUnwindSafe(panicking(key, &slot, &runs))
        .catch_unwind()
        .await
        .expect_err("the panic propagates to the caller");
    assert_eq!(panic_text(&p), "the job panicked on purpose");
    let rows = runs_of(&obs, k).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].outcome.as_str(), rows[0].attempt, rows[0].finished),
        ("panicked", 1, true)
    );
    assert_released(&obs, k).await;

    let e = panicking(key, &slot, &runs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyRan, "{e:?}");
    assert_eq!(e.previous_run().unwrap().outcome, RunOutcome::Panicked);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The same through the builder, and through `tokio::spawn`.
    let (key, slot) = (unique_key(), label("panicked-builder"));
    let k = LockKey::Int(key);
    let s = slot.clone();
    let joined = tokio::spawn(async move {
        advisory(key)
            .slot(s)
            .run(async { panic!("builder job panicked") })
            .await
    })
    .await
    .expect_err("the task panicked");
    assert!(joined.is_panic());
    assert_eq!(panic_text(&joined.into_panic()), "builder job panicked");
    let rows = runs_of(&obs, k).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.slot.as_str(), r.outcome.as_str(), r.finished))
            .collect::<Vec<_>>(),
        vec![(slot.as_str(), "panicked", true)]
    );
    assert_released(&obs, k).await;
    let e = advisory(key)
        .slot(&slot)
        .run(async { unreachable!("the slot ran") })
        .await
        .unwrap_err();
    assert!(e.is_already_ran(), "{e:?}");
}

// ---------------------------------------------------------------------------
// 3. `retry`: a failed or panicked run leaves the slot open until one succeeds.

#[advisory_lock(key = key, slot = slot, retry)]
async fn retried(key: i64, slot: &str, fail: bool, runs: &AtomicUsize) -> Result<(), JobError> {
    runs.fetch_add(1, Ordering::SeqCst);
    if fail {
        Err(JobError::Failed)
    } else {
        Ok(())
    }
}

#[tokio::test]
async fn retry_reopens_a_failed_slot_until_a_run_succeeds() {
    setup_owned();
    let obs = observer().await;
    let (key, slot) = (unique_key(), label("retry"));
    let k = LockKey::Int(key);
    let runs = AtomicUsize::new(0);
    let state = |rows: Vec<RunRow>| {
        rows.into_iter()
            .map(|r| (r.attempt, r.outcome, r.finished))
            .collect::<Vec<_>>()
    };

    assert!(matches!(
        retried(key, &slot, true, &runs).await,
        Err(JobError::Failed)
    ));
    assert_eq!(
        state(runs_of(&obs, k).await),
        vec![(1, "failed".into(), true)]
    );
    assert!(matches!(
        retried(key, &slot, true, &runs).await,
        Err(JobError::Failed)
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the failed slot ran again");
    assert_eq!(
        state(runs_of(&obs, k).await),
        vec![(2, "failed".into(), true)]
    );
    retried(key, &slot, false, &runs).await.unwrap();
    assert_eq!(
        state(runs_of(&obs, k).await),
        vec![(3, "succeeded".into(), true)]
    );
    // Closed once it succeeded.
    let e = retried(key, &slot, false, &runs)
        .await
        .unwrap_err()
        .pglock();
    assert_eq!(e.kind(), ErrorKind::AlreadyRan, "{e:?}");
    assert_eq!(e.previous_run().unwrap().outcome, RunOutcome::Succeeded);
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    // A panic with the builder's `retry(true)` leaves the slot open too.
    let (key, slot) = (unique_key(), label("retry-panic"));
    let k = LockKey::Int(key);
    let lock = advisory(key).slot(&slot).retry(true);
    let r = AssertUnwindSafe(lock.run(async { panic!("first attempt") }))
        .catch_unwind()
        .await;
    assert!(r.is_err());
    assert_eq!(
        state(runs_of(&obs, k).await),
        vec![(1, "panicked".into(), true)]
    );
    assert_eq!(lock.run(async { 7 }).await.unwrap(), 7);
    assert_eq!(
        state(runs_of(&obs, k).await),
        vec![(2, "succeeded".into(), true)]
    );
    assert!(lock.run(async { 8 }).await.unwrap_err().is_already_ran());
    assert_released(&obs, k).await;
}

// ---------------------------------------------------------------------------
// 4. A crash mid-run: the slot stays `started`, the lock is free, the next slot
// runs, the same slot does not.

#[tokio::test]
async fn a_crash_mid_run_leaves_the_slot_started_and_the_next_slot_runs() {
    setup_owned();
    let obs = observer().await;
    let id = unique_key().unsigned_abs();
    let table = format!("slot_crash_{id}");
    obs.batch_execute(&format!(
        "CREATE TABLE {table} (worker text NOT NULL, tick bigint NOT NULL, \
         at timestamptz NOT NULL DEFAULT clock_timestamp())"
    ))
    .await
    .unwrap();
    let name = format!("slot-crash-{id}");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start_ms = (now_ms / 1000 + 2) * 1000;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slot-worker"))
        .args(["--url", url()])
        .args(["--name", &name])
        .args(["--key", &format!("slot_semantics::{table}")])
        .args(["--table", &table])
        .args(["--mode", "slot"])
        .args(["--ticks", "1"])
        .args(["--job-ms", "120000"])
        .args(["--start-ms", &start_ms.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("slot-worker starts");
    let child_pid = child.id().map(|p| p as i32);

    // Its run, as soon as it is claimed and the body is under way.
    // Its run, once claimed and the body is under way (its row is in the table).
    // Until the worker has installed pglock's schema the query fails: poll on.
    let poll = format!(
        "SELECT classid, objid, objsubid, backend_pid FROM pglock.runs \
         WHERE application_name = $1 AND EXISTS (SELECT 1 FROM {table})"
    );
    let run = within(20, "the worker's run appears", async {
        loop {
            if let Ok(Some(r)) = obs.query_opt(&poll, &[&name]).await {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let key = LockKey::from_pg_locks(run.get(0), run.get(1), run.get(2)).unwrap();
    let backend: i32 = run.get(3);
    assert_eq!(
        holders(&obs, key).await,
        vec![backend],
        "the worker holds the lock"
    );

    child.start_kill().expect("SIGKILL the worker");
    let status = within(10, "the worker dies", child.wait()).await.unwrap();
    assert!(!status.success());
    assert_gone(&obs, backend).await;
    assert_released(&obs, key).await;

    let rows = runs_of(&obs, key).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let crashed = &rows[0];
    assert_eq!(crashed.outcome, "started", "{crashed:?}");
    assert!(!crashed.finished, "no finished_at: {crashed:?}");
    assert_eq!(crashed.client_pid, child_pid);
    assert_eq!(crashed.job, "slot_worker::job_slot");
    let planned = UNIX_EPOCH + Duration::from_millis(start_ms);
    assert_eq!(crashed.slot_start_ms, Some(start_ms as i64));

    // The same slot does not run again, even for a caller with `retry` (a crash
    // is no failed run to retry; the slot's identity is key and label, not job).
    let ran = AtomicUsize::new(0);
    let e = advisory(key)
        .no_wait()
        .slot(planned)
        .retry(true)
        .run(async { ran.fetch_add(1, Ordering::SeqCst) })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyRan, "{e:?}");
    let previous = e.previous_run().unwrap();
    assert_eq!(previous.outcome, RunOutcome::Started);
    assert_eq!(previous.client_pid, child_pid);
    assert_eq!(previous.application_name, name);
    assert!(previous.finished_at.is_none());
    assert_eq!(ran.load(Ordering::SeqCst), 0);

    // The next slot runs normally.
    let next = planned + Duration::from_secs(1);
    advisory(key)
        .no_wait()
        .slot(next)
        .job("slot_worker::job_slot")
        .run(async { ran.fetch_add(1, Ordering::SeqCst) })
        .await
        .unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let rows = runs_of(&obs, key).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.slot_start_ms, r.outcome.as_str(), r.finished))
            .collect::<Vec<_>>(),
        vec![
            (Some(start_ms as i64), "started", false),
            (Some(start_ms as i64 + 1000), "succeeded", true)
        ]
    );
    assert_released(&obs, key).await;
    obs.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// 5. Already ran is not busy.

#[advisory_lock(key = key, slot = slot, timeout = 0, using = "sem-named")]
async fn scheduled_raise(key: i64, slot: &str, runs: &AtomicUsize) -> Result<bool, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(true)
}

#[advisory_lock(key = key, slot = slot, timeout = 0, on_fail = skip, using = "sem-named")]
async fn scheduled_skip(key: i64, slot: &str, runs: &AtomicUsize) -> Result<bool, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(true)
}

#[tokio::test]
async fn already_ran_is_its_own_outcome_distinct_from_busy() {
    setup_owned();
    named();
    let obs = observer().await;
    let (key, slot) = (unique_key(), label("busy-vs-ran"));
    let k = LockKey::Int(key);
    let runs = AtomicUsize::new(0);

    // Busy: the key is held by a plain session; nothing is claimed.
    let (holder, holder_pid) = advisory_holder(url(), "sem-holder", key).await;
    let e = scheduled_raise(key, &slot, &runs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e:?}");
    assert!(e.previous_run().is_none());
    assert_eq!(
        e.holders().iter().map(|h| h.pid).collect::<Vec<_>>(),
        vec![holder_pid]
    );
    let (guard, events) = capture_events();
    assert!(matches!(scheduled_skip(key, &slot, &runs).await, Ok(false)));
    drop(guard);
    let busy_events = events.text();
    assert!(
        busy_events.contains("skipped: the lock is held elsewhere"),
        "{busy_events}"
    );
    assert!(!busy_events.contains("already ran"), "{busy_events}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(
        runs_of(&obs, k).await.is_empty(),
        "a busy call claims nothing"
    );
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();

    // The slot runs once...
    assert!(scheduled_raise(key, &slot, &runs).await.unwrap());
    let rows = runs_of(&obs, k).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "succeeded");

    // ...then AlreadyRan, not Busy.
    let e = scheduled_raise(key, &slot, &runs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyRan, "{e:?}");
    assert!(!e.is_busy() && !e.is_not_acquired());
    assert!(e.holders().is_empty());
    let previous = e.previous_run().unwrap();
    assert_eq!(previous.application_name, app_name());
    assert_eq!(previous.client_pid, this_pid());

    // on_fail = skip: the skipped value, and a debug event naming who ran it.
    let (guard, events) = capture_events();
    assert!(matches!(scheduled_skip(key, &slot, &runs).await, Ok(false)));
    drop(guard);
    let text = events.text();
    let line = text
        .lines()
        .find(|l| l.contains("skipped: this slot already ran"))
        .unwrap_or_else(|| panic!("no already-ran event in {text:?}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("slot_semantics::scheduled_skip"), "{line}");
    assert!(line.contains(&slot), "{line}");
    assert!(line.contains(&format!("ran_by={}", app_name())), "{line}");
    assert!(
        line.contains(&format!("pid={}", std::process::id())),
        "{line}"
    );
    assert!(line.contains("started_at="), "{line}");
    assert!(line.contains("outcome=succeeded"), "{line}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(runs_of(&obs, k).await, rows, "the skips changed nothing");
    assert_released(&obs, k).await;
}

// ---------------------------------------------------------------------------
// 6. Plain (sync) functions.

#[advisory_lock(key = key, slot = slot, timeout = 0, on_fail = skip)]
fn sync_slot(key: i64, slot: &str, runs: &AtomicUsize) -> Option<i32> {
    runs.fetch_add(1, Ordering::SeqCst);
    Some(blocking::connection().unwrap().backend_pid())
}

#[advisory_lock(key = key, once_per = "1h")]
fn sync_once_per(key: i64, runs: &AtomicUsize) -> Result<i32, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(blocking::connection()?.backend_pid())
}

#[advisory_lock(key = key, slot = slot)]
fn sync_fails(key: i64, slot: &str, panic: bool) -> Result<(), JobError> {
    if panic {
        panic!("sync job panicked");
    }
    Err(JobError::Failed)?;
    Ok(())
}

/// Calls of the sync functions, from whatever thread runs this; returns the
/// slot labels used (succeeded, failed, panicked). `sync_once_per` uses `key + 1`
/// and hourly slots: its two calls are milliseconds apart, so they fall in one
/// slot unless they straddle the top of an hour.
fn exercise_sync(key: i64) -> (String, String, String) {
    let (slot, failed, panicked) = (label("sync"), label("sync-err"), label("sync-panic"));
    let runs = AtomicUsize::new(0);
    let pid = sync_slot(key, &slot, &runs).expect("the first call runs");
    assert!(pid > 0);
    assert_eq!(sync_slot(key, &slot, &runs), None, "skipped: the slot ran");
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let hourly = AtomicUsize::new(0);
    let once_key = key.wrapping_add(1);
    sync_once_per(once_key, &hourly).unwrap();
    let e = sync_once_per(once_key, &hourly).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyRan, "{e:?}");
    assert_eq!(hourly.load(Ordering::SeqCst), 1);

    assert!(matches!(
        sync_fails(key, &failed, false),
        Err(JobError::Failed)
    ));
    let r = std::panic::catch_unwind(|| sync_fails(key, &panicked, true));
    assert!(r.is_err(), "the panic propagates");
    (slot, failed, panicked)
}

async fn check_sync_rows(key: i64, slots: (String, String, String)) {
    let obs = observer().await;
    let rows = runs_of(&obs, LockKey::Int(key)).await;
    let mut want = vec![
        (slots.0, "succeeded".to_owned()),
        (slots.1, "failed".to_owned()),
        (slots.2, "panicked".to_owned()),
    ];
    want.sort();
    assert_eq!(
        rows.iter()
            .map(|r| (r.slot.clone(), r.outcome.clone()))
            .collect::<Vec<_>>(),
        want
    );
    assert!(rows.iter().all(|r| r.finished));
    let hourly = runs_of(&obs, LockKey::Int(key.wrapping_add(1))).await;
    assert_eq!(hourly.len(), 1, "{hourly:?}");
    assert_eq!(hourly[0].period_ms, Some(3_600_000));
    assert_eq!(hourly[0].outcome, "succeeded");
    assert_eq!(hourly[0].job, "slot_semantics::sync_once_per");
    assert_released(&obs, LockKey::Int(key)).await;
    assert_released(&obs, LockKey::Int(key.wrapping_add(1))).await;
}

#[tokio::test]
async fn sync_functions_with_slots_from_a_plain_thread() {
    setup_owned();
    let key = unique_key();
    let thread = std::thread::spawn(move || exercise_sync(key));
    let slots = tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    check_sync_rows(key, slots).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_functions_with_slots_inside_a_multi_thread_runtime() {
    setup_owned();
    let key = unique_key();
    let slots = exercise_sync(key);
    check_sync_rows(key, slots).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sync_functions_with_slots_inside_a_current_thread_runtime() {
    setup_owned();
    let key = unique_key();
    let slots = exercise_sync(key);
    check_sync_rows(key, slots).await;
}

// ---------------------------------------------------------------------------
// 7. `xact`: the body's writes follow its outcome, the run record stays.

/// The body of the `xact` jobs: a row into `table` on the scope connection (of
/// `alias`), then
/// success, the body's own failure, or a database error.
async fn xact_body(
    alias: &str,
    table: &str,
    how: &str,
    pid: &std::sync::Mutex<i32>,
) -> Result<(), JobError> {
    let db = connection_for(alias).await?;
    *pid.lock().unwrap() = db.backend_pid();
    db.execute(&format!("INSERT INTO {table} VALUES (2)"), &[])
        .await
        .map_err(Error::from)?;
    match how {
        "ok" => Ok(()),
        "err" => Err(JobError::Failed),
        // A database error: the transaction is aborted when the body returns.
        "db" => {
            db.execute("SELECT 1 / 0", &[]).await.map_err(Error::from)?;
            Ok(())
        }
        other => unreachable!("{other}"),
    }
}

#[advisory_lock(key = key, slot = slot, xact, using = "sem-xact")]
async fn xact_job(
    key: i64,
    slot: &str,
    table: &str,
    how: &str,
    pid: &std::sync::Mutex<i32>,
) -> Result<(), JobError> {
    xact_body("sem-xact", table, how, pid).await
}

#[advisory_lock(key = key, slot = slot, xact, using = "sem-xact-fresh")]
async fn xact_job_fresh(
    key: i64,
    slot: &str,
    table: &str,
    how: &str,
    pid: &std::sync::Mutex<i32>,
) -> Result<(), JobError> {
    xact_body("sem-xact-fresh", table, how, pid).await
}

async fn rows_in(obs: &tokio_postgres::Client, table: &str) -> i64 {
    obs.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// The `xact` semantics on a connection that has run an `xact` slot call before.
#[tokio::test]
async fn xact_rolls_back_a_failed_body_but_keeps_its_run() {
    setup_owned();
    one_connection_alias("sem-xact");
    let obs = observer().await;
    let table = fresh_table(&obs, "slot_xact").await;
    let key = unique_key();
    let k = LockKey::Int(key);
    let pid = std::sync::Mutex::new(0);
    // The alias's one connection runs an `xact` slot call first (see
    // `an_xact_run_that_fails_first_on_its_connection_keeps_its_record`).
    let warm = label("xact-warm");
    xact_job(key, &warm, &table, "ok", &pid).await.unwrap();
    let mut want = vec![(warm, "succeeded".to_owned(), true)];
    for (how, outcome, rows_after) in [
        ("err", "failed", 2),
        ("db", "failed", 2),
        ("ok", "succeeded", 3),
    ] {
        let slot = label(&format!("xact-{how}"));
        let r = xact_job(key, &slot, &table, how, &pid).await;
        assert_eq!(r.is_ok(), how == "ok", "{how}: {r:?}");
        assert_eq!(rows_in(&obs, &table).await, rows_after, "{how}");
        let backend = *pid.lock().unwrap();
        assert_eq!(
            settled_state(&obs, backend).await.as_deref(),
            Some("idle"),
            "{how}: no transaction left open"
        );
        assert!(
            advisory_rows(&obs, k).await.is_empty(),
            "{how}: no lock left"
        );
        want.push((slot.clone(), outcome.to_owned(), true));

        // The slot is taken, and refusing it leaves nothing open either.
        let e = xact_job(key, &slot, &table, "ok", &pid)
            .await
            .unwrap_err()
            .pglock();
        assert_eq!(e.kind(), ErrorKind::AlreadyRan, "{how}: {e:?}");
        assert_eq!(rows_in(&obs, &table).await, rows_after);
        assert_eq!(settled_state(&obs, backend).await.as_deref(), Some("idle"));
        assert!(advisory_rows(&obs, k).await.is_empty());
    }
    want.sort();
    assert_eq!(
        runs_of(&obs, k)
            .await
            .into_iter()
            .map(|r| (r.slot, r.outcome, r.finished))
            .collect::<Vec<_>>(),
        want
    );
}

/// The first `xact` slot call on a connection, failing: its run must stay
/// recorded (`failed`) and its slot taken, as on a connection that ran one before.
///
/// Regression: the claim statement is not prepared on the connection yet, so
/// `advisory::lock` first awaits `Session::statement` (a prepare). A
/// `SAVEPOINT pglock_body` joined behind the lock used to reach the server
/// *before* the claim executed (`BEGIN`, `SAVEPOINT pglock_body`, execute,
/// `ROLLBACK TO SAVEPOINT pglock_body`, `finish`, `COMMIT`): the rollback undid
/// the claim, `finish` updated no row, and the slot was open again. Now the
/// savepoint follows the claim unless the lock statement goes out whole at once
/// (`lock::advisory::sent_at_once`).
#[tokio::test]
async fn an_xact_run_that_fails_first_on_its_connection_keeps_its_record() {
    setup_owned();
    one_connection_alias("sem-xact-fresh");
    let obs = observer().await;
    let table = fresh_table(&obs, "slot_xact_fresh").await;
    let key = unique_key();
    let k = LockKey::Int(key);
    let pid = std::sync::Mutex::new(0);
    // The alias has found pglock's schema, and its connection has run a
    // session-level slot call: only the `xact` claim statement is new to it.
    advisory(unique_key())
        .using("sem-xact-fresh")
        .slot(label("xact-fresh-session"))
        .run(async {})
        .await
        .unwrap();
    let slot = label("xact-fresh-err");
    let r = xact_job_fresh(key, &slot, &table, "err", &pid).await;
    assert!(matches!(r, Err(JobError::Failed)), "{r:?}");
    assert_eq!(rows_in(&obs, &table).await, 1, "the body's row rolled back");
    assert!(advisory_rows(&obs, k).await.is_empty());
    let rows = runs_of(&obs, k).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.slot.as_str(), r.outcome.as_str(), r.finished))
            .collect::<Vec<_>>(),
        vec![(slot.as_str(), "failed", true)],
        "the failed run is recorded"
    );
    let r = xact_job_fresh(key, &slot, &table, "ok", &pid).await;
    assert!(
        matches!(&r, Err(JobError::Pglock(e)) if e.is_already_ran()),
        "the slot is taken: {r:?}"
    );
}

// ---------------------------------------------------------------------------
// 8. `using`: the run is recorded through that alias.

#[advisory_lock(key = key, slot = slot, using = "other")]
async fn via_other(key: i64, slot: &str) -> Result<i32, Error> {
    Ok(connection_for("other").await?.backend_pid())
}

#[tokio::test]
async fn using_records_the_run_through_that_alias() {
    setup_owned();
    other();
    let obs = observer().await;
    let (key, slot) = (unique_key(), label("using"));
    let k = LockKey::Int(key);
    let pid = via_other(key, &slot).await.unwrap();
    let rows = runs_of(&obs, k).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].backend_pid,
        Some(pid),
        "claimed on the alias's session"
    );
    assert_eq!(rows[0].outcome, "succeeded");
    assert_eq!(rows[0].job, "slot_semantics::via_other");

    // Both aliases see the slot taken.
    let e = via_other(key, &slot).await.unwrap_err();
    assert!(e.is_already_ran(), "{e:?}");
    for alias in ["default", "other"] {
        let e = advisory(key)
            .using(alias)
            .slot(&slot)
            .run(async { unreachable!("the slot ran") })
            .await
            .unwrap_err();
        assert!(e.is_already_ran(), "{alias}: {e:?}");
    }
    assert_eq!(runs_of(&obs, k).await, rows);
    assert_released(&obs, k).await;
}

// ---------------------------------------------------------------------------
// 9. Guards: standby refused, transaction pooler works with `xact` only.

#[tokio::test]
async fn a_slot_call_on_a_hot_standby_is_refused_and_records_nothing() {
    let primary = pglock_testkit::Cluster::start().expect("primary");
    register("sem-primary", Config::from_url(&primary.url()).unwrap()).unwrap();
    // Install pglock's schema on the primary, so that the standby has it too.
    let installed = label("standby-install");
    advisory(1)
        .using("sem-primary")
        .slot(&installed)
        .run(async {})
        .await
        .unwrap();
    let standby = primary.start_standby().expect("streaming standby");
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
    register("sem-standby", Config::from_url(&standby.url()).unwrap()).unwrap();

    let (key, slot) = (unique_key(), label("standby"));
    let ran = AtomicUsize::new(0);
    let e = advisory(key)
        .using("sem-standby")
        .slot(&slot)
        .run(async { ran.fetch_add(1, Ordering::SeqCst) })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Standby, "{e:?}");
    let e = advisory(key)
        .using("sem-standby")
        .once_per(Duration::from_secs(60))
        .no_wait()
        .run(async { ran.fetch_add(1, Ordering::SeqCst) })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Standby, "{e:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);

    for server in [&primary, &standby] {
        let obs = session(&server.url(), "observer").await;
        let rows: Vec<(String,)> = obs
            .query("SELECT slot FROM pglock.runs ORDER BY slot", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0),))
            .collect();
        // The standby may lag: it has at most the install's row.
        assert!(
            rows.iter().all(|(s,)| *s == installed),
            "only the primary's own run: {rows:?}"
        );
        assert!(runs_of(&obs, LockKey::Int(key)).await.is_empty());
        assert!(holders(&obs, LockKey::Int(key)).await.is_empty());
    }
}

#[tokio::test]
async fn behind_a_transaction_pooler_a_slot_works_with_xact_only() {
    setup_owned();
    let pg = pglock_testkit::shared_cluster();
    let bouncer = pg.start_pgbouncer("transaction", 2).expect("pgbouncer");
    register(
        "sem-txpool",
        Config::from_url(&bouncer.url())
            .unwrap()
            .max_size(2)
            .transaction_pooling(true),
    )
    .unwrap();
    let obs = session(&pg.url(), "observer").await;
    let key = unique_key();
    let k = LockKey::Int(key);

    // Without `xact`: refused, nothing recorded, nothing held.
    let refused = label("pooler-session");
    let e = advisory(key)
        .using("sem-txpool")
        .slot(&refused)
        .run(async { unreachable!("refused") })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Pooler, "{e:?}");
    assert!(runs_of(&obs, k).await.is_empty());
    assert!(holders(&obs, k).await.is_empty());

    // With `xact`: the run is recorded, once.
    let slot = label("pooler-xact");
    let lock = advisory(key).using("sem-txpool").xact().slot(&slot);
    let held = lock.run(async { holders(&obs, k).await }).await.unwrap();
    assert_eq!(held.len(), 1, "held on the server while the body ran");
    let rows = runs_of(&obs, k).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.slot.as_str(), r.outcome.as_str(), r.finished))
            .collect::<Vec<_>>(),
        vec![(slot.as_str(), "succeeded", true)]
    );
    assert_eq!(rows[0].backend_pid, Some(held[0]));
    let e = lock.run(async {}).await.unwrap_err();
    assert!(e.is_already_ran(), "{e:?}");
    assert!(holders(&obs, k).await.is_empty());

    // A failed (panicked) xact run behind the pooler keeps its record too.
    let failed = label("pooler-panic");
    let r = AssertUnwindSafe(
        advisory(key)
            .using("sem-txpool")
            .xact()
            .slot(&failed)
            .run(async { panic!("pooled job panicked") }),
    )
    .catch_unwind()
    .await;
    assert!(r.is_err());
    let rows = runs_of(&obs, k).await;
    assert!(
        rows.iter()
            .any(|r| r.slot == failed && r.outcome == "panicked" && r.finished),
        "{rows:?}"
    );
}

// ---------------------------------------------------------------------------
// 10. Slots with a guard, or shared, are usage errors.

#[tokio::test]
async fn a_slot_on_a_guard_or_a_shared_lock_is_a_usage_error() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let k = LockKey::Int(key);
    let slot = label("usage");
    for lock in [
        advisory(key).slot(&slot),
        advisory(key).once_per(Duration::from_secs(1)),
    ] {
        let e = lock.acquire().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{e:?}");
        let e = lock.try_acquire().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{e:?}");
        let client = observer().await;
        let e = lock.acquire_on(&client).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{e:?}");
    }
    let ran = AtomicUsize::new(0);
    let e = advisory(key)
        .shared()
        .slot(&slot)
        .run(async { ran.fetch_add(1, Ordering::SeqCst) })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{e:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(runs_of(&obs, k).await.is_empty());
    assert!(advisory_rows(&obs, k).await.is_empty());
}

/// The sync scope API must check the same: a shared lock with a slot is refused,
/// not run.
///
/// Fails today: `AdvisoryLock::run_blocking` (api/blocking.rs) enters the scope
/// without `check_slot`, so the shared slot reaches `advisory::lock`, whose
/// `debug_assert!(claim.is_none() || !shared)` panics in a debug build (in a
/// release build the claim statement, built from the exclusive lock statements
/// only, would take an exclusive lock for a `shared()` call).
#[test]
fn a_shared_slot_in_run_blocking_is_a_usage_error() {
    setup_owned();
    let key = unique_key();
    let ran = AtomicUsize::new(0);
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        advisory(key)
            .shared()
            .slot(label("usage-blocking"))
            .run_blocking(|| ran.fetch_add(1, Ordering::SeqCst))
    }));
    let e = match r {
        Ok(Ok(_)) => panic!("a shared slot ran its body"),
        Ok(Err(e)) => e,
        Err(p) => panic!("pglock panicked instead of refusing: {}", panic_text(&p)),
    };
    assert_eq!(e.kind(), ErrorKind::Usage, "{e:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// 11. once_per: one run per slot of the database's clock.

#[tokio::test]
async fn once_per_runs_once_per_slot_and_again_in_the_next() {
    setup_owned();
    let obs = observer().await;
    let key = unique_key();
    let k = LockKey::Int(key);
    let lock = advisory(key)
        .no_wait()
        .once_per(Duration::from_secs(1))
        .job(format!("slot_semantics::once_per_{key}"));
    // Calls every 100 ms for 2.5 s: at least two slots, several calls each.
    let mut ran = Vec::new();
    let mut skipped = Vec::new();
    for _ in 0..25 {
        let r = lock
            .run(async { connection().await.unwrap().backend_pid() })
            .await;
        match r {
            Ok(pid) => ran.push(pid),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::AlreadyRan, "{e:?}");
                skipped.push(e.previous_run().unwrap().slot.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = runs_of(&obs, k).await;
    let labels: Vec<&str> = rows.iter().map(|r| r.slot.as_str()).collect();
    assert_eq!(rows.len(), ran.len(), "one row per run: {rows:?}");
    assert!(
        rows.len() >= 2,
        "the calls spanned two slots at least: {rows:?}"
    );
    assert!(!skipped.is_empty(), "some calls fell in a slot that ran");
    for s in &skipped {
        assert!(
            labels.contains(&s.as_str()),
            "skipped for a recorded slot: {s}"
        );
    }
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.period_ms, Some(1000));
        assert_eq!(r.outcome, "succeeded");
        assert_eq!(r.attempt, 1);
        let start = r.slot_start_ms.expect("once_per slots have a start");
        assert_eq!(start % 1000, 0, "a slot starts on a second: {r:?}");
        let at = UNIX_EPOCH + Duration::from_millis(start as u64);
        assert_eq!(
            r.slot,
            pglock_runtime::Slot::at(at).to_string(),
            "labelled by its start"
        );
        if i > 0 {
            // Consecutive seconds: every slot the calls fell in ran.
            assert_eq!(start - rows[i - 1].slot_start_ms.unwrap(), 1000, "{rows:?}");
        }
    }
    // Every call either ran its slot or found it taken.
    assert_eq!(ran.len() + skipped.len(), 25);
    assert_released(&obs, k).await;
}
