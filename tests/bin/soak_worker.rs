//! A soak-test worker process (run by `tests/soak.rs`, not by hand).
//!
//! `soak-worker URL KEY DIR ITERATIONS SEED CANCEL APP` runs 4 tasks that, ITERATIONS
//! times each, either increment the counter in `DIR/counter` under an exclusive
//! advisory lock, or read it twice under a shared lock and check nothing changed
//! in between. With CANCEL=1, a fifth of the attempts are cancelled at a random
//! point by a deadline. Before writing, a writer checks that its session is still
//! alive (a terminated session has lost the lock). Prints one line:
//! `ok <increments> <reads> <torn reads> <cancelled> <errors>`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pglock_runtime::{advisory, Config};

struct Stats {
    increments: AtomicU64,
    reads: AtomicU64,
    torn: AtomicU64,
    cancelled: AtomicU64,
    errors: AtomicU64,
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn read(path: &PathBuf) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, dir, iterations, seed, cancel, app] = args.as_slice() else {
        eprintln!("usage: soak-worker URL KEY DIR ITERATIONS SEED CANCEL APPLICATION_NAME");
        std::process::exit(2);
    };
    let mut config: tokio_postgres::Config = url.parse().expect("URL");
    config.application_name(app);
    pglock_runtime::register("default", Config::new(config).max_size(8)).unwrap();
    let key: i64 = key.parse().unwrap();
    let counter = PathBuf::from(dir).join("counter");
    let iterations: u64 = iterations.parse().unwrap();
    let seed: u64 = seed.parse().unwrap();
    let cancel = cancel == "1";
    let stats = Arc::new(Stats {
        increments: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        torn: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let (stats, counter) = (stats.clone(), counter.clone());
            tokio::spawn(async move {
                let mut rng = seed.wrapping_mul(31).wrapping_add(t * 7919) | 1;
                for _ in 0..iterations {
                    let hold = Duration::from_micros(next(&mut rng) % 1500);
                    let writer = next(&mut rng) % 10 < 7;
                    let deadline = (cancel && next(&mut rng) % 5 == 0)
                        .then(|| Duration::from_micros(next(&mut rng) % 3000));
                    let work = async {
                        if writer {
                            advisory(key)
                                .run(async {
                                    let n = read(&counter);
                                    tokio::time::sleep(hold).await;
                                    // A terminated session has lost the lock: don't write.
                                    let db = pglock_runtime::connection().await?;
                                    db.query_one("SELECT 1", &[]).await?;
                                    std::fs::write(&counter, (n + 1).to_string()).unwrap();
                                    Ok::<bool, pglock_runtime::Error>(true)
                                })
                                .await
                        } else {
                            advisory(key)
                                .shared()
                                .run(async {
                                    let a = read(&counter);
                                    tokio::time::sleep(hold).await;
                                    let b = read(&counter);
                                    let db = pglock_runtime::connection().await?;
                                    db.query_one("SELECT 1", &[]).await?;
                                    Ok::<bool, pglock_runtime::Error>(a == b)
                                })
                                .await
                        }
                    };
                    let outcome = match deadline {
                        Some(d) => match tokio::time::timeout(d, work).await {
                            Ok(r) => r,
                            Err(_) => {
                                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                        None => work.await,
                    };
                    match outcome {
                        Ok(Ok(consistent)) => {
                            if writer {
                                stats.increments.fetch_add(1, Ordering::Relaxed);
                            } else {
                                stats.reads.fetch_add(1, Ordering::Relaxed);
                                if !consistent {
                                    stats.torn.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        // Connection lost (injected terminations), lock lost: retry.
                        Ok(Err(_)) | Err(_) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = &stats;
    println!(
        "ok {} {} {} {} {}",
        s.increments.load(Ordering::Relaxed),
        s.reads.load(Ordering::Relaxed),
        s.torn.load(Ordering::Relaxed),
        s.cancelled.load(Ordering::Relaxed),
        s.errors.load(Ordering::Relaxed)
    );
}
