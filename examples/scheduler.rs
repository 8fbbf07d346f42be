//! Several workers race for the same scheduled job; each round exactly one runs it
//! and the others skip, told who holds the lock.
//!
//! ```sh
//! cargo run -p pglock-examples --example scheduler
//! ```
//!
//! Uses `DATABASE_URL` when it is set; otherwise starts a throw-away PostgreSQL
//! cluster for the run (and removes it afterwards). Exits with status 1 if any round
//! did not run exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pglock_runtime::{advisory, connection, Config};
use tokio::sync::Barrier;

const WORKERS: usize = 5;
const ROUNDS: usize = 4;

/// The job: must run once per round across the whole fleet.
async fn send_reminders(worker: usize, round: usize) -> Result<(), pglock_runtime::Error> {
    // The scope connection: the very session holding the lock.
    let db = connection().await?;
    println!(
        "round {round}: worker {worker} sends the reminders (backend pid {})",
        db.backend_pid()
    );
    // Long enough that every other worker tries while the lock is held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            println!("using DATABASE_URL");
            url
        }
        Err(_) => {
            println!("DATABASE_URL is not set: starting a throw-away PostgreSQL cluster…");
            let url = pglock_testkit::database_url();
            println!("started it at {url}");
            url
        }
    };
    pglock_runtime::register("default", Config::from_url(&url)?)?;

    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let tick = Arc::new(Barrier::new(WORKERS));
    let workers: Vec<_> = (1..=WORKERS)
        .map(|worker| {
            let (runs, tick) = (runs.clone(), tick.clone());
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    // Every worker's scheduler fires at the same moment.
                    tick.wait().await;
                    let attempt = advisory("reminders")
                        .no_wait()
                        .run(async {
                            runs[round].fetch_add(1, Ordering::SeqCst);
                            send_reminders(worker, round + 1).await
                        })
                        .await;
                    match attempt {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            eprintln!("round {}: worker {worker}: job failed: {e}", round + 1)
                        }
                        Err(e) if e.is_busy() => {
                            let by = e
                                .holders()
                                .first()
                                .map_or_else(|| "someone".to_owned(), ToString::to_string);
                            println!("round {}: worker {worker} skips: held by {by}", round + 1);
                        }
                        Err(e) => eprintln!("round {}: worker {worker}: {e}", round + 1),
                    }
                    // Wait for the round to end before the next tick.
                    tick.wait().await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }

    let counts: Vec<usize> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    println!("runs per round: {counts:?}");
    if counts.iter().all(|&n| n == 1) {
        println!("every round ran exactly once across {WORKERS} workers");
        Ok(())
    } else {
        eprintln!("a round did not run exactly once");
        std::process::exit(1);
    }
}
