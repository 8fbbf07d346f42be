//! pglock against sqlx's `PgAdvisoryLock`, in one run, on one cluster, interleaved.
//!
//! ```sh
//! cd bench-peers && cargo build --release
//! taskset -c 0 target/release/pglock-bench-peers 3000   # or with DATABASE_URL=...
//! ```
//!
//! Pinned to one CPU: unpinned, each contender's round trips run in a fast or a
//! slow mode per run, by where the kernel puts its client threads relative to its
//! server backend, which swamps the differences measured here (BENCHMARKS.md).

use std::time::{Duration, Instant};

use sqlx::postgres::{PgAdvisoryLock, PgPoolOptions};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
}

#[pglock_runtime::advisory_lock(key = 0x7E58_0000_0001_i64)]
async fn annotated() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

#[pglock_runtime::advisory_lock(key = 0x7E58_0000_0005_i64, using = "awaited")]
async fn annotated_awaited() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

/// Closes pglock's one connection of `alias`, so the next call opens a new one.
async fn reconnect(alias: &str) {
    let c = pglock_runtime::connection_for(alias).await.unwrap();
    c.discard();
    drop(c);
    while pglock_runtime::pool_status(alias).is_some_and(|s| s.open > 0) {
        tokio::task::yield_now().await;
    }
}

/// The contenders that are not pglock: a raw tokio-postgres client with its
/// lock statements prepared, and a one-connection sqlx pool.
struct Peers {
    raw: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    lock: tokio_postgres::Statement,
    unlock: tokio_postgres::Statement,
    pool: sqlx::PgPool,
}

impl Peers {
    async fn connect(url: &str) -> Peers {
        let (raw, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        Peers {
            lock: raw.prepare("SELECT pg_advisory_lock($1)").await.unwrap(),
            unlock: raw.prepare("SELECT pg_advisory_unlock($1)").await.unwrap(),
            raw,
            driver,
            pool: PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .unwrap(),
        }
    }
}

const ROWS: [&str; 5] = [
    "raw tokio-postgres lock+unlock",
    "pglock guard acquire+release",
    "pglock annotated empty async fn",
    "pglock annotated, awaited release",
    "sqlx PgAdvisoryLock acquire+release_now",
];

async fn run(url: String, n: usize) {
    // One connection per contender, reopened every round: a loopback round trip
    // on these VMs is fast or slow per server backend (by where the scheduler
    // put it), so every contender samples many backends, interleaved.
    pglock_runtime::register(
        "default",
        pglock_runtime::Config::from_url(&url).unwrap().max_size(1),
    )
    .unwrap();
    pglock_runtime::register(
        "awaited",
        pglock_runtime::Config::from_url(&url)
            .unwrap()
            .max_size(1)
            .pipelined_release(false),
    )
    .unwrap();
    let lock =
        PgAdvisoryLock::with_key(sqlx::postgres::PgAdvisoryLockKey::BigInt(0x7E58_0000_0004));
    let k = 0x7E58_0000_0002_i64;
    let rounds = 20;
    let mut samples: Vec<Vec<Duration>> = ROWS.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        let Peers {
            raw,
            driver,
            lock: l,
            unlock: u,
            pool,
        } = Peers::connect(&url).await;
        reconnect("default").await;
        reconnect("awaited").await;
        for i in 0..(n / rounds).max(2) + 3 {
            let mut d = [Duration::ZERO; 5];
            let t = Instant::now();
            raw.query_one(&l, &[&k]).await.unwrap();
            raw.query_one(&u, &[&k]).await.unwrap();
            d[0] = t.elapsed();
            let t = Instant::now();
            pglock_runtime::advisory(0x7E58_0000_0003_i64)
                .acquire()
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
            d[1] = t.elapsed();
            let t = Instant::now();
            annotated().await.unwrap();
            d[2] = t.elapsed();
            let t = Instant::now();
            annotated_awaited().await.unwrap();
            d[3] = t.elapsed();
            let t = Instant::now();
            let conn = pool.acquire().await.unwrap();
            let guard = lock.acquire(conn).await.unwrap();
            guard.release_now().await.unwrap();
            d[4] = t.elapsed();
            // The first iterations of a round warm the new connections up.
            if i >= 3 {
                for (s, d) in samples.iter_mut().zip(d) {
                    s.push(d);
                }
            }
        }
        pool.close().await;
        drop(raw);
        let _ = driver.await;
    }
    let m: Vec<f64> = samples.into_iter().map(median).collect();
    println!("{:<44} {:>9}", "acquire + release (median)", "µs");
    for (name, v) in ROWS.iter().zip(&m) {
        println!("{name:<44} {v:>9.1}");
    }
    println!();
    println!(
        "pglock guard / sqlx      {:.2}  (target ≤ 0.6)",
        m[1] / m[4]
    );
    println!(
        "pglock annotated / sqlx  {:.2}  (target ≤ 0.6)",
        m[2] / m[4]
    );
    println!(
        "pglock awaited / sqlx    {:.2}  (target ≤ 0.6)",
        m[3] / m[4]
    );
    println!("sqlx / raw               {:.2}", m[4] / m[0]);
    println!();
    wire(&url, &lock).await;
}

/// Every contender again through a loopback proxy that delays each server reply
/// by 4 ms: the median, in round trips, is how many round trips the caller waits
/// for (client CPU and scheduling vanish at that scale), and the proxy counts the
/// statement batches (`Sync`s and simple queries) each operation sends.
async fn wire(url: &str, lock: &PgAdvisoryLock) {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let proxy = pglock_bench::wire::WireCounter::start(pglock_bench::host_port(&config)).await;
    let curl = proxy.url(url);
    pglock_runtime::register(
        "counted",
        pglock_runtime::Config::from_url(&curl).unwrap().max_size(1),
    )
    .unwrap();
    pglock_runtime::register(
        "counted-awaited",
        pglock_runtime::Config::from_url(&curl)
            .unwrap()
            .max_size(1)
            .pipelined_release(false),
    )
    .unwrap();
    let Peers {
        raw,
        lock: l,
        unlock: u,
        pool,
        ..
    } = Peers::connect(&curl).await;
    let s1 = raw.prepare("SELECT 1").await.unwrap();
    let k = 0x7E58_0000_0006_i64;
    let mut one = f64::NAN;
    println!(
        "{:<44} {:>7} {:>9}",
        "on the wire (per operation)", "syncs", "critical"
    );
    for (i, name) in ["raw SELECT 1"].iter().chain(ROWS.iter()).enumerate() {
        let op = || async {
            match i {
                0 => drop(raw.query_one(&s1, &[]).await.unwrap()),
                1 => {
                    raw.query_one(&l, &[&k]).await.unwrap();
                    raw.query_one(&u, &[&k]).await.unwrap();
                }
                2 => pglock_runtime::advisory(k)
                    .using("counted")
                    .acquire()
                    .await
                    .unwrap()
                    .release()
                    .await
                    .unwrap(),
                3 => pglock_runtime::advisory(k)
                    .using("counted")
                    .run(async {})
                    .await
                    .unwrap(),
                4 => pglock_runtime::advisory(k)
                    .using("counted-awaited")
                    .run(async {})
                    .await
                    .unwrap(),
                _ => {
                    let conn = pool.acquire().await.unwrap();
                    lock.acquire(conn)
                        .await
                        .unwrap()
                        .release_now()
                        .await
                        .unwrap();
                }
            }
        };
        for _ in 0..5 {
            op().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = proxy.snapshot();
        let n = 20;
        for _ in 0..n {
            op().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let syncs = proxy.snapshot().since(&before).syncs as f64 / n as f64;
        proxy.set_delay(Duration::from_millis(4));
        op().await;
        let mut v = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            op().await;
            v.push(t.elapsed());
        }
        proxy.set_delay(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let d = median(v);
        if one.is_nan() {
            one = d;
        }
        println!("{name:<44} {syncs:>7.2} {:>9.2}", d / one);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3000);
    let url = pglock_testkit::database_url();
    tokio::spawn(run(url, n)).await.unwrap();
}
