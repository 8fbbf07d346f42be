//! Why single-caller latencies are compared on one backend: `SELECT 1` medians on
//! three connections of one process (two raw clients and a pglock pooled one),
//! interleaved. On the 2-core VMs this was written on, each connection is in a
//! fast (~20 µs) or slow (~70–80 µs) mode depending on where the scheduler put its
//! server backend, and which one is fast changes from run to run.
//! `cargo run --release -p pglock-bench --example lat` (uses `DATABASE_URL`, or
//! starts a throw-away cluster).
use pglock_testkit::observe::connect;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tokio::spawn(async { go().await }).await.unwrap();
}

async fn go() {
    let url = pglock_testkit::database_url();
    let config: tokio_postgres::Config = url.parse().unwrap();
    pglock_runtime::register("default", pglock_runtime::Config::new(config.clone())).unwrap();
    let a = connect(&url).await;
    let p = pglock_runtime::connection().await.unwrap();
    let b = connect(&url).await;
    let sa = a.prepare("SELECT 1").await.unwrap();
    let sp = p.prepare("SELECT 1").await.unwrap();
    let sb = b.prepare("SELECT 1").await.unwrap();
    let mut v: [Vec<Duration>; 3] = Default::default();
    for _ in 0..3000 {
        let t = Instant::now();
        a.query_one(&sa, &[]).await.unwrap();
        v[0].push(t.elapsed());
        let t = Instant::now();
        p.query_one(&sp, &[]).await.unwrap();
        v[1].push(t.elapsed());
        let t = Instant::now();
        b.query_one(&sb, &[]).await.unwrap();
        v[2].push(t.elapsed());
    }
    for (n, mut x) in ["raw a", "pool", "raw b"].into_iter().zip(v) {
        x.sort();
        println!("{n}: {:?}", x[x.len() / 2]);
    }
}
