//! Mutual exclusion soak across processes: worker subprocesses increment a
//! counter kept in a one-row table under an exclusive lock (read, wait, write the
//! value read plus one) and read it twice under shared locks. Checked from
//! outside: the counter equals the increments the workers report (no lost update),
//! no torn read, and no lock left in `pg_locks`. Run again with random
//! cancellations and with backend terminations injected, and once without the lock,
//! to show that the checks catch a missing lock.
//!
//! The counter lives in the database, and is read and written only on the session
//! that holds the lock, by a statement that checks `pg_locks` (see
//! `bin/soak_worker.rs`): a session that lost the lock to a termination cannot
//! write. (Kept in a file, the counter was written after a check that the session
//! was alive, and a termination between the check and the write let two processes
//! write at once: the test failed without any fault of the lock.)
//!
//! Figures for RELIABILITY.md: `cargo test -p pglock-tests --test soak -- --nocapture`.

use std::time::{Duration, Instant};

use pglock_runtime::LockKey;
use pglock_tests::*;

const PROCESSES: u64 = 3;

#[derive(Default)]
struct Totals {
    increments: u64,
    reads: u64,
    torn: u64,
    cancelled: u64,
    errors: u64,
    /// Statements that ran on a session not holding the key, by `pg_locks`.
    unfenced: u64,
    counter: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lock {
    Advisory,
    /// The broken variant: no lock at all.
    None,
}

async fn soak(iterations: u64, cancel: bool, terminate: bool, lock: Lock) -> Totals {
    let obs = observer().await;
    let key = unique_key();
    let table = format!("pglock_soak_{}", key.unsigned_abs());
    obs.batch_execute(&format!(
        "CREATE TABLE {table} (n int8 NOT NULL); INSERT INTO {table} VALUES (0)"
    ))
    .await
    .unwrap();
    // Each soak's workers have their own application_name: the terminations of one
    // soak must not hit another running concurrently.
    let app = format!("soak-worker-{}", key.unsigned_abs());
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_soak-worker"))
                .args([
                    url(),
                    &key.to_string(),
                    &table,
                    &iterations.to_string(),
                    &(key.unsigned_abs() ^ (p + 1)).to_string(),
                    if cancel { "1" } else { "0" },
                    &app,
                    match lock {
                        Lock::Advisory => "advisory",
                        Lock::None => "none",
                    },
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("soak-worker starts")
        })
        .collect();
    // Terminate a random worker backend every 50 ms while they run.
    let killer = terminate.then(|| {
        let app = app.clone();
        tokio::spawn(async move {
            let obs = observer().await;
            let mut killed = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let r = obs
                    .query_opt(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 ORDER BY random() LIMIT 1",
                        &[&app],
                    )
                    .await;
                if let Ok(Some(_)) = r {
                    killed += 1;
                }
                if killed >= 40 {
                    return killed;
                }
            }
        })
    });
    let mut t = Totals::default();
    for child in children {
        let out = within(300, "soak worker", child.wait_with_output())
            .await
            .unwrap();
        assert!(out.status.success(), "worker failed: {out:?}");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        t.increments += f[0];
        t.reads += f[1];
        t.torn += f[2];
        t.cancelled += f[3];
        t.errors += f[4];
        t.unfenced += f[5];
    }
    if let Some(k) = killer {
        k.abort();
    }
    let n: i64 = query_value(&obs, &format!("SELECT n FROM {table}")).await;
    t.counter = n.try_into().unwrap();
    assert_released(&obs, LockKey::Int(key)).await;
    obs.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    t
}

fn report(name: &str, t: &Totals, started: Instant) {
    eprintln!(
        "soak {name}: {} acquisitions ({} increments, {} shared reads), {} cancelled, {} errors, \
         counter {} (reported increments {:+}), torn reads {}, unfenced statements {}, {:?}",
        t.increments + t.reads + t.cancelled + t.errors,
        t.increments,
        t.reads,
        t.cancelled,
        t.errors,
        t.counter,
        t.counter as i64 - t.increments as i64,
        t.torn,
        t.unfenced,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_across_processes() {
    setup_owned();
    let started = Instant::now();
    let t = soak(150, false, false, Lock::Advisory).await;
    report("plain", &t, started);
    assert_eq!(t.unfenced, 0, "a statement ran without the lock");
    assert_eq!(t.counter, t.increments, "lost updates");
    assert_eq!(t.torn, 0, "a writer ran while a shared holder read");
    assert_eq!(t.errors, 0, "nothing was injected");
    assert!(t.increments + t.reads >= PROCESSES * 4 * 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_with_random_cancellations() {
    setup_owned();
    let started = Instant::now();
    let t = soak(150, true, false, Lock::Advisory).await;
    report("cancellations", &t, started);
    assert_eq!(t.unfenced, 0, "a statement ran without the lock");
    assert!(t.cancelled > 0, "cancellations were injected");
    assert!(
        t.increments + t.reads >= PROCESSES * 4 * 150 / 2,
        "most attempts completed"
    );
    // A cancelled writer's update may have been committed before its deadline hit:
    // the counter can only be ahead of the reported increments by at most the
    // cancellations.
    assert!(t.counter >= t.increments, "lost updates");
    assert!(t.counter <= t.increments + t.cancelled);
    assert_eq!(t.torn, 0, "a writer ran while a shared holder read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_with_backend_terminations() {
    setup_owned();
    let started = Instant::now();
    let t = soak(150, false, true, Lock::Advisory).await;
    report("terminations", &t, started);
    assert_eq!(t.unfenced, 0, "a statement ran without the lock");
    assert!(t.errors > 0, "terminations were injected");
    assert!(
        t.increments + t.reads >= PROCESSES * 4 * 150 / 2,
        "most attempts completed"
    );
    // A writer whose session is terminated after its update committed (before the
    // reply, or before the release) reports an error although the update happened:
    // the counter may lead the reported increments by at most the errors. Lagging
    // would be a lost update.
    assert!(t.counter >= t.increments, "lost updates");
    assert!(t.counter <= t.increments + t.errors);
    assert_eq!(t.torn, 0, "a writer ran while a shared holder read");
}

/// The checks above can fail: without the lock, the same workers lose updates
/// and see torn reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_detects_a_missing_lock() {
    setup_owned();
    let started = Instant::now();
    let t = soak(150, false, false, Lock::None).await;
    report("without a lock", &t, started);
    assert_eq!(t.errors, 0, "nothing was injected");
    assert!(t.increments > 0);
    assert!(t.counter < t.increments, "no lost update without a lock");
    assert!(t.torn > 0, "no torn read without a lock");
}
