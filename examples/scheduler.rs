//! Several workers run the same cron schedule; each tick exactly one of them runs
//! the job, the others skip it. Each worker has its own scheduler, as separate
//! processes of a fleet would.
//!
//! ```sh
//! cargo run -p pglock-examples --example scheduler
//! ```
//!
//! Uses `DATABASE_URL` when it is set; otherwise starts a throw-away PostgreSQL
//! cluster for the run. Exits with status 1 if any tick did not run exactly once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pglock_runtime::advisory_lock;
use tokio_cron_scheduler::{Job, JobScheduler};

#[path = "common.rs"]
mod common;

const WORKERS: usize = 5;
const TICKS: u64 = 4;

/// The job: must run once per tick across the whole fleet. Busy means another
/// worker has it: skip (returns `false`, the skipped value of `bool`).
#[advisory_lock(timeout = 0, on_fail = skip)]
async fn send_reminders(worker: usize, tick: u64) -> bool {
    // The scope connection is the very session holding the lock.
    let pid = match pglock_runtime::connection().await {
        Ok(db) => db.backend_pid(),
        Err(e) => {
            eprintln!("tick {tick}: worker {worker}: {e}");
            return true;
        }
    };
    println!("tick {tick}: worker {worker} sends the reminders (backend pid {pid})");
    // Long enough that every other worker's tick fires while the lock is held.
    tokio::time::sleep(Duration::from_millis(400)).await;
    true
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::connect()?;
    // Skips are debug events; show them.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_target(false)
        .without_time()
        .compact()
        .init();

    let runs: Arc<Mutex<BTreeMap<u64, Vec<usize>>>> = Arc::default();
    let mut schedulers = Vec::new();
    for worker in 1..=WORKERS {
        let sched = JobScheduler::new().await?;
        let runs = runs.clone();
        // Every second, on the second.
        sched
            .add(Job::new_async("* * * * * *", move |_, _| {
                let runs = runs.clone();
                Box::pin(async move {
                    let tick = now_secs();
                    if send_reminders(worker, tick).await {
                        runs.lock().unwrap().entry(tick).or_default().push(worker);
                    }
                })
            })?)
            .await?;
        schedulers.push(sched);
    }
    for s in &schedulers {
        s.start().await?;
    }
    tokio::time::sleep(Duration::from_secs(TICKS) + Duration::from_millis(600)).await;
    for mut s in schedulers {
        s.shutdown().await?;
    }

    let runs = runs.lock().unwrap().clone();
    for (i, (tick, workers)) in runs.iter().enumerate() {
        println!("tick {} (at {tick}s): run by worker(s) {workers:?}", i + 1);
    }
    if runs.len() as u64 >= TICKS - 1 && runs.values().all(|w| w.len() == 1) {
        println!("every tick ran exactly once across {WORKERS} workers");
        Ok(())
    } else {
        eprintln!("a tick did not run exactly once");
        std::process::exit(1);
    }
}
