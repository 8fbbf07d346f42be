//! pglock against sqlx's `PgAdvisoryLock`, in one run, on one cluster.
//!
//! ```sh
//! cd bench-peers && cargo run --release            # or with DATABASE_URL=...
//! ```

use std::time::{Duration, Instant};

use sqlx::postgres::{PgAdvisoryLock, PgPoolOptions};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
}

async fn sample<F, Fut>(n: usize, mut op: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..n / 10 {
        op().await;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        op().await;
        v.push(t.elapsed());
    }
    median(v)
}

#[pglock_runtime::advisory_lock(key = 0x7E58_0000_0001_i64)]
async fn annotated() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

#[pglock_runtime::advisory_lock(key = 0x7E58_0000_0005_i64, using = "pipelined")]
async fn annotated_pipelined() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

async fn run(url: String, n: usize) {
    // Raw tokio-postgres on this runtime.
    let (raw, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let (l, u) = (
        raw.prepare("SELECT pg_advisory_lock($1)").await.unwrap(),
        raw.prepare("SELECT pg_advisory_unlock($1)").await.unwrap(),
    );
    let k = 0x7E58_0000_0002_i64;
    let raw_us = sample(n, || async {
        raw.query_one(&l, &[&k]).await.unwrap();
        raw.query_one(&u, &[&k]).await.unwrap();
    })
    .await;

    // pglock.
    pglock_runtime::register("default", pglock_runtime::Config::from_url(&url).unwrap()).unwrap();
    pglock_runtime::register(
        "pipelined",
        pglock_runtime::Config::from_url(&url).unwrap().pipelined_release(true),
    )
    .unwrap();
    let pglock_guard_us = sample(n, || async {
        pglock_runtime::advisory(0x7E58_0000_0003_i64)
            .acquire()
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    })
    .await;
    let pglock_attr_us = sample(n, || async { annotated().await.unwrap() }).await;
    let pglock_pipe_us = sample(n, || async { annotated_pipelined().await.unwrap() }).await;

    // sqlx: PgAdvisoryLock on a pooled connection, acquire + release.
    let pool = PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
    let lock = PgAdvisoryLock::with_key(sqlx::postgres::PgAdvisoryLockKey::BigInt(0x7E58_0000_0004));
    let sqlx_us = sample(n, || async {
        let conn = pool.acquire().await.unwrap();
        let guard = lock.acquire(conn).await.unwrap();
        guard.release_now().await.unwrap();
    })
    .await;

    println!("{:<44} {:>9}", "acquire + release (median)", "µs");
    println!("{:<44} {:>9.1}", "raw tokio-postgres lock+unlock", raw_us);
    println!("{:<44} {:>9.1}", "pglock guard acquire+release", pglock_guard_us);
    println!("{:<44} {:>9.1}", "pglock annotated empty async fn", pglock_attr_us);
    println!("{:<44} {:>9.1}", "pglock annotated, pipelined release", pglock_pipe_us);
    println!("{:<44} {:>9.1}", "sqlx PgAdvisoryLock acquire+release_now", sqlx_us);
    println!();
    println!("pglock guard / sqlx      {:.2}  (target ≤ 0.6)", pglock_guard_us / sqlx_us);
    println!("pglock annotated / sqlx  {:.2}  (target ≤ 0.6)", pglock_attr_us / sqlx_us);
    println!("pglock pipelined / sqlx  {:.2}  (target ≤ 0.6)", pglock_pipe_us / sqlx_us);
    println!("sqlx / raw               {:.2}", sqlx_us / raw_us);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let url = pglock_testkit::database_url();
    tokio::spawn(run(url, n)).await.unwrap();
}
