//! A soak-test worker process (run by `tests/soak.rs`, not by hand).
//!
//! `soak-worker URL KEY TABLE ITERATIONS SEED CANCEL APP LOCK` runs 4 tasks that,
//! ITERATIONS times each, either increment the counter in the one-row table TABLE
//! under an exclusive advisory lock (read it, wait, write the value read plus one:
//! a lost update unless no other writer ran in between), or read it twice under a
//! shared lock and check nothing changed in between. With CANCEL=1, a fifth of the
//! attempts are cancelled at a random point by a deadline.
//!
//! Every read and write runs on the session that holds the lock (the scope
//! connection), so a session that lost the lock to a termination cannot run them.
//! The write is fenced besides: the `UPDATE` changes the row only if `pg_locks`
//! says, at that moment, that this session holds the key exclusively; the reads
//! report whether it holds the key. Checking the session first and then writing
//! somewhere else (a file) would not do: the session can be terminated, and the
//! lock taken by another process, between the check and the write.
//!
//! LOCK is `advisory`, or `none` for the deliberately broken variant: no lock and
//! no fence, so that the soak can show its checks catch what a missing lock does.
//!
//! Prints one line:
//! `ok <increments> <reads> <torn reads> <cancelled> <errors> <unfenced>`, where
//! `unfenced` counts statements that ran on a session `pg_locks` did not show
//! holding the key (none unless the scope connection is not the lock's session).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pglock_runtime::{advisory, Config, LockKey};

#[derive(Default)]
struct Stats {
    increments: AtomicU64,
    reads: AtomicU64,
    torn: AtomicU64,
    cancelled: AtomicU64,
    errors: AtomicU64,
    unfenced: AtomicU64,
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Whether this session holds the key (`$1`, `$2`, `$3`: `pg_locks` classid, objid,
/// objsubid) in mode `$4`.
const HELD: &str = "EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND pid = pg_backend_pid() AND granted \
     AND classid = $1 AND objid = $2 AND objsubid = $3 AND mode = $4)";

/// The statements of one soak, on its table.
struct Sql {
    /// The counter, and whether this session holds the key in the mode of `$4`.
    read: String,
    /// Sets the counter to `$5` if this session holds the key exclusively.
    write: String,
    /// The broken variant's write: no fence.
    write_unfenced: String,
}

impl Sql {
    fn new(table: &str) -> Sql {
        Sql {
            read: format!("SELECT n, {HELD} FROM {table}"),
            write: format!("UPDATE {table} SET n = $5 WHERE {HELD}"),
            write_unfenced: format!("UPDATE {table} SET n = $1"),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, table, iterations, seed, cancel, app, lock] = args.as_slice() else {
        eprintln!("usage: soak-worker URL KEY TABLE ITERATIONS SEED CANCEL APPLICATION_NAME LOCK");
        std::process::exit(2);
    };
    let mut config: tokio_postgres::Config = url.parse().expect("URL");
    config.application_name(app);
    pglock_runtime::register("default", Config::new(config).max_size(8)).unwrap();
    let key: i64 = key.parse().unwrap();
    let iterations: u64 = iterations.parse().unwrap();
    let seed: u64 = seed.parse().unwrap();
    let cancel = cancel == "1";
    let locked = match lock.as_str() {
        "advisory" => true,
        "none" => false,
        other => panic!("LOCK is `advisory` or `none`, not {other:?}"),
    };
    let sql = Arc::new(Sql::new(table));
    let stats = Arc::new(Stats::default());
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let (stats, sql) = (stats.clone(), sql.clone());
            tokio::spawn(async move {
                let (c, o, s) = LockKey::Int(key).pg_locks_ids();
                let mut rng = seed.wrapping_mul(31).wrapping_add(t * 7919) | 1;
                for _ in 0..iterations {
                    let hold = Duration::from_micros(next(&mut rng) % 1500);
                    let writer = next(&mut rng) % 10 < 7;
                    let deadline = (cancel && next(&mut rng) % 5 == 0)
                        .then(|| Duration::from_micros(next(&mut rng) % 3000));
                    let mode = if writer { "ExclusiveLock" } else { "ShareLock" };
                    // Inside a scope, the session that holds the lock.
                    let read = || async {
                        let db = pglock_runtime::connection().await?;
                        let row = db.query_one(&sql.read, &[&c, &o, &s, &mode]).await?;
                        if !row.get::<_, bool>(1) && locked {
                            stats.unfenced.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok::<i64, pglock_runtime::Error>(row.get(0))
                    };
                    let body = async {
                        if writer {
                            let n = read().await?;
                            tokio::time::sleep(hold).await;
                            let db = pglock_runtime::connection().await?;
                            let written = if locked {
                                db.execute(&sql.write, &[&c, &o, &s, &mode, &(n + 1)])
                                    .await?
                            } else {
                                db.execute(&sql.write_unfenced, &[&(n + 1)]).await?
                            };
                            if written == 0 {
                                stats.unfenced.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok::<bool, pglock_runtime::Error>(written == 1)
                        } else {
                            let a = read().await?;
                            tokio::time::sleep(hold).await;
                            let b = read().await?;
                            Ok(a == b)
                        }
                    };
                    let work = async {
                        match (locked, writer) {
                            (false, _) => Ok(body.await),
                            (true, true) => advisory(key).run(body).await,
                            (true, false) => advisory(key).shared().run(body).await,
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
                        // `consistent`: a writer's update was made (not refused by the
                        // fence), a reader's two reads agreed.
                        Ok(Ok(consistent)) => {
                            if writer {
                                if consistent {
                                    stats.increments.fetch_add(1, Ordering::Relaxed);
                                }
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
        "ok {} {} {} {} {} {}",
        s.increments.load(Ordering::Relaxed),
        s.reads.load(Ordering::Relaxed),
        s.torn.load(Ordering::Relaxed),
        s.cancelled.load(Ordering::Relaxed),
        s.errors.load(Ordering::Relaxed),
        s.unfenced.load(Ordering::Relaxed)
    );
}
