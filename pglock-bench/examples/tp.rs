//! Throughput experiment: raw clients vs pglock `run(async {})` at N tasks on
//! distinct keys, with client CPU per op: `run` on an alias with awaited release,
//! `run-piped` with the (default) pipelined release, `pool-select1` a checkout and
//! a `SELECT 1`. `cargo run --release -p pglock-bench --example tp -- 8`;
//! `ONLY=raw,run` runs only the variants named (for `perf stat`), `NOHB=1` turns
//! the heartbeat off. Uses `DATABASE_URL`, or starts a throw-away cluster.
use pglock_runtime::{advisory, Config};
use pglock_testkit::observe::connect;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tokio::spawn(async { go().await }).await.unwrap();
}

async fn go() {
    let url = pglock_testkit::database_url();
    let tasks: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(8);
    let ops: usize = 2000;
    let config: tokio_postgres::Config = url.parse().unwrap();
    let heartbeat = if std::env::var_os("NOHB").is_some() {
        None
    } else {
        Some(Duration::from_secs(1))
    };
    let base = Config::new(config.clone())
        .max_size(80)
        .heartbeat(heartbeat);
    pglock_runtime::register("default", base.clone().pipelined_release(false)).unwrap();
    pglock_runtime::register("piped", base.pipelined_release(true)).unwrap();
    let mut clients = vec![];
    for _ in 0..tasks {
        let c = connect(&url).await;
        let l = c.prepare("SELECT pg_advisory_lock($1)").await.unwrap();
        let u = c.prepare("SELECT pg_advisory_unlock($1)").await.unwrap();
        clients.push(std::sync::Arc::new((c, l, u)));
    }
    for round in 0..3 {
        let only = std::env::var("ONLY").ok();
        for variant in ["raw", "pool-select1", "run", "run-piped"] {
            if only
                .as_deref()
                .is_some_and(|o| !o.split(',').any(|x| x == variant))
            {
                continue;
            }
            let c0 = pglock_bench::cpu_micros();
            let t = Instant::now();
            let hs: Vec<_> = (0..tasks)
                .map(|i| {
                    let cl = clients[i].clone();
                    tokio::spawn(async move {
                        let key = 1000 + i as i64;
                        for _ in 0..ops {
                            match variant {
                                "raw" => {
                                    cl.0.query_one(&cl.1, &[&key]).await.unwrap();
                                    cl.0.query_one(&cl.2, &[&key]).await.unwrap();
                                }
                                "pool-select1" => {
                                    let c = pglock_runtime::connection().await.unwrap();
                                    c.simple_query("SELECT 1").await.unwrap();
                                }
                                "run" => {
                                    advisory(key).run(async {}).await.unwrap();
                                }
                                "run-piped" => {
                                    advisory(key).using("piped").run(async {}).await.unwrap();
                                }
                                _ => unreachable!(),
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            let el = t.elapsed();
            let n = (tasks * ops) as f64;
            if round > 0 {
                println!(
                    "{variant:14} {:8.0} ops/s  cpu/op {:5.1} µs",
                    n / el.as_secs_f64(),
                    (pglock_bench::cpu_micros() - c0) / n
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
