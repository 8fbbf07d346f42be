//! Mutual exclusion soak across processes: worker subprocesses increment a
//! counter kept in a file (outside PostgreSQL) under an exclusive lock and read it
//! under shared locks. Checked from outside: the counter equals the increments the
//! workers report (no lost update), no torn read, and no lock left in `pg_locks`.
//! Run again with random cancellations and with backend terminations injected.
//!
//! Figures for RELIABILITY.md: `cargo test -p pglock-tests --test soak -- --nocapture`.

use std::time::{Duration, Instant};

use pglock_runtime::LockKey;
use pglock_tests::*;

const PROCESSES: u64 = 3;

struct Totals {
    increments: u64,
    reads: u64,
    torn: u64,
    cancelled: u64,
    errors: u64,
    counter: u64,
}

async fn soak(iterations: u64, cancel: bool, terminate: bool) -> Totals {
    let obs = observer().await;
    let key = unique_key();
    let dir = std::env::temp_dir().join(format!(
        "pglock-soak-{}-{}",
        std::process::id(),
        key.unsigned_abs()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    // Each soak's workers have their own application_name: the terminations of one
    // soak must not hit another running concurrently.
    let app = format!("soak-worker-{}", key.unsigned_abs());
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_soak-worker"))
                .args([
                    url(),
                    &key.to_string(),
                    dir.to_str().unwrap(),
                    &iterations.to_string(),
                    &(key.unsigned_abs() ^ (p + 1)).to_string(),
                    if cancel { "1" } else { "0" },
                    &app,
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
    let mut t = Totals {
        increments: 0,
        reads: 0,
        torn: 0,
        cancelled: 0,
        errors: 0,
        counter: 0,
    };
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
    }
    if let Some(k) = killer {
        k.abort();
    }
    t.counter = std::fs::read_to_string(dir.join("counter"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert_released(&obs, LockKey::Int(key)).await;
    std::fs::remove_dir_all(&dir).ok();
    t
}

fn report(name: &str, t: &Totals, started: Instant) {
    eprintln!(
        "soak {name}: {} acquisitions ({} increments, {} shared reads), {} cancelled, {} errors, \
         counter {} (reported increments {:+}), torn reads {}, {:?}",
        t.increments + t.reads + t.cancelled + t.errors,
        t.increments,
        t.reads,
        t.cancelled,
        t.errors,
        t.counter,
        t.counter as i64 - t.increments as i64,
        t.torn,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_across_processes() {
    setup_owned();
    let started = Instant::now();
    let t = soak(150, false, false).await;
    report("plain", &t, started);
    assert_eq!(t.counter, t.increments, "lost updates");
    assert_eq!(t.torn, 0, "a writer ran while a shared holder read");
    assert_eq!(t.errors, 0, "nothing was injected");
    assert!(t.increments + t.reads >= PROCESSES * 4 * 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_with_random_cancellations() {
    setup_owned();
    let started = Instant::now();
    let t = soak(150, true, false).await;
    report("cancellations", &t, started);
    assert!(t.cancelled > 0, "cancellations were injected");
    // A cancelled writer may have written before its deadline hit: the counter can
    // only be ahead of the reported increments by at most the cancellations.
    assert!(t.counter >= t.increments && t.counter <= t.increments + t.cancelled);
    assert_eq!(t.torn, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_with_backend_terminations() {
    setup_owned();
    let started = Instant::now();
    let t = soak(150, false, true).await;
    report("terminations", &t, started);
    assert!(t.errors > 0, "terminations were injected");
    // A writer whose session is terminated after its write (before the release)
    // reports an error although the write happened: the counter may lead the
    // reported increments by at most the errors. Lagging would be a lost update.
    assert!(t.counter >= t.increments, "lost updates");
    assert!(t.counter <= t.increments + t.errors);
    assert_eq!(t.torn, 0);
}
