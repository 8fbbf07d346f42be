//! A fleet of workers, each a separate process with its own cron scheduler, runs
//! a fast job every second. Their ticks fire up to 300 ms apart (as clock skew,
//! start-up offsets and pauses make them in a real fleet), and the job takes 3 ms:
//! a lock alone would let every worker run every tick, since the job is long done
//! when the next worker's tick fires. `once_per = "1s"` makes it one run per
//! second of the *database's* clock across the fleet; the runs are recorded in
//! pglock's schema, and this program prints them.
//!
//! ```sh
//! cargo run -p pglock-examples --example scheduler
//! ```
//!
//! Uses `DATABASE_URL` when it is set; otherwise starts a throw-away PostgreSQL
//! cluster for the run. Exits with status 1 if a slot ran more than once, or if a
//! slot between the first and the last run ran nowhere.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pglock_runtime::advisory_lock;
use tokio_cron_scheduler::{Job, JobScheduler};

#[path = "common.rs"]
mod common;

const WORKERS: u64 = 4;
/// How far apart the workers' ticks fire.
const STAGGER: Duration = Duration::from_millis(100);
/// How long each worker runs its scheduler.
const RUN_FOR: Duration = Duration::from_secs(6);
/// Set in the environment of the worker processes this program starts.
const WORKER_ENV: &str = "PGLOCK_SCHEDULER_WORKER";

/// The job: at most once per second across the fleet, whichever worker's tick
/// comes first in that second. The others skip (`false`, the skipped value of
/// `bool`); a debug event names the worker that ran it.
#[advisory_lock(timeout = 0, on_fail = skip, once_per = "1s")]
async fn send_reminders(worker: u64) -> bool {
    // The scope connection is the very session holding the lock.
    if let Ok(db) = pglock_runtime::connection().await {
        println!(
            "  worker {worker} sends the reminders (backend pid {})",
            db.backend_pid()
        );
    }
    tokio::time::sleep(Duration::from_millis(3)).await;
    true
}

/// One worker: a cron scheduler that fires every second, 0 to 300 ms late (a
/// different worker first each second, as skew and pauses move around).
async fn worker(worker: u64) -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?;
    let config = pglock_runtime::Config::from_url(&url)?
        .application_name(&format!("scheduler-worker-{worker}"));
    pglock_runtime::register("default", config)?;
    let sched = JobScheduler::new().await?;
    sched
        .add(Job::new_async("* * * * * *", move |_, _| {
            Box::pin(async move {
                let second = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let late = (second + worker) % WORKERS;
                tokio::time::sleep(STAGGER * u32::try_from(late).unwrap_or(0)).await;
                send_reminders(worker).await;
            })
        })?)
        .await?;
    sched.start().await?;
    // Ctrl-C or SIGTERM (a deploy) ends the worker early, like the end of its run.
    tokio::select! {
        () = tokio::time::sleep(RUN_FOR) => {}
        () = common::termination() => println!("worker {worker}: stopping on a signal"),
    }
    let mut sched = sched;
    sched.shutdown().await?;
    // A job still running gets 5 s; then its lock goes with its session.
    pglock_runtime::shutdown(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(n) = std::env::var(WORKER_ENV) {
        return worker(n.parse()?).await;
    }
    let url = common::connect()?;
    let started = SystemTime::now();
    println!(
        "starting {WORKERS} worker processes, ticks up to {:?} apart, job 3 ms…",
        STAGGER * u32::try_from(WORKERS - 1).unwrap_or(0)
    );
    let mut children = Vec::new();
    for n in 0..WORKERS {
        children.push(
            tokio::process::Command::new(std::env::current_exe()?)
                .env(WORKER_ENV, n.to_string())
                .env("DATABASE_URL", &url)
                .stdout(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    for mut child in children {
        if !child.wait().await?.success() {
            eprintln!("a worker failed");
            std::process::exit(1);
        }
    }

    let runs = pglock_runtime::runs()
        .job("scheduler::send_reminders")
        .since(started)
        .recent()
        .await?;
    println!("\npglock.runs for scheduler::send_reminders (newest first):");
    println!(
        "{:<28} {:<20} {:<10} {:>7}  outcome",
        "slot", "application_name", "host", "pid"
    );
    let mut per_slot: BTreeMap<SystemTime, usize> = BTreeMap::new();
    for run in &runs {
        println!(
            "{:<28} {:<20} {:<10} {:>7}  {}",
            run.slot,
            run.application_name,
            run.host,
            run.client_pid.unwrap_or_default(),
            run.outcome
        );
        if let Some(start) = run.slot_start {
            *per_slot.entry(start).or_default() += 1;
        }
    }
    let missed: Vec<_> = pglock_runtime::runs()
        .job("scheduler::send_reminders")
        .since(started)
        .missed()
        .await?
        .into_iter()
        .filter(|m| {
            per_slot
                .keys()
                .next_back()
                .is_some_and(|last| m.slot_start < *last)
        })
        .collect();
    let twice = per_slot.values().filter(|n| **n > 1).count();
    if per_slot.len() >= 3 && twice == 0 && missed.is_empty() {
        println!(
            "\n{} slots, each run exactly once across {WORKERS} workers",
            per_slot.len()
        );
        Ok(())
    } else {
        eprintln!(
            "\n{} slots: {twice} ran more than once, {} between the first and the last ran nowhere",
            per_slot.len(),
            missed.len()
        );
        std::process::exit(1);
    }
}
