//! pglock's benchmark. Every figure is measured in one run, on one throw-away
//! cluster, next to the baseline it is compared with, because these machines are
//! noisy: only the ratios mean anything.
//!
//! Run it with `cargo run --release -p pglock-bench` (see BENCHMARKS.md).

use std::time::{Duration, Instant};

use pglock_runtime::{advisory, advisory_lock, connection, Config, Error, LockKey};
use tokio_postgres::{Client, NoTls};

/// Key bases, far from anything else.
const KEY: i64 = 0x7E57_0000_0000;

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub name: &'static str,
    /// Median, or throughput for `per_second` rows.
    pub value: f64,
    /// 90th percentile (latency rows only).
    pub p90: Option<f64>,
    /// Unit of `value`.
    pub unit: &'static str,
}

/// A target from issue 6, checked against this run's rows.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What is compared.
    pub name: &'static str,
    /// Measured ratio (or count).
    pub measured: f64,
    /// The target.
    pub target: &'static str,
    /// Whether it is met.
    pub pass: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Measurements.
    pub rows: Vec<Row>,
    /// Targets.
    pub verdicts: Vec<Verdict>,
}

impl Report {
    fn value(&self, name: &str) -> f64 {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .map_or(f64::NAN, |r| r.value)
    }
}

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Samples per latency row.
    pub iterations: usize,
    /// Operations per task in throughput rows.
    pub ops_per_task: usize,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median_p90(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    let m = v[v.len() / 2];
    let p = v[(v.len() * 9 / 10).min(v.len() - 1)];
    (micros(m), micros(p))
}

async fn latency<F, Fut>(n: usize, mut op: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..(n / 10).max(3) {
        op().await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        op().await;
        samples.push(t.elapsed());
    }
    median_p90(samples)
}

async fn raw_client(url: &str, app: &str) -> Client {
    let mut config: tokio_postgres::Config = url.parse().expect("valid URL");
    config.application_name(app);
    let (client, conn) = config.connect(NoTls).await.expect("connects");
    tokio::spawn(conn);
    client
}

#[advisory_lock(key = KEY + 1)]
async fn annotated_empty() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(key = KEY + 5, using = "pipelined")]
async fn annotated_pipelined() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(key = KEY + 2, xact)]
async fn annotated_xact() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(key = key, timeout = 0, on_fail = skip)]
async fn skip_if_busy(key: i64) -> bool {
    true
}

#[advisory_lock(key = KEY + 4)]
fn annotated_sync() -> Result<(), Error> {
    Ok(())
}

/// Runs every measurement against `url` (the `"default"` alias must not be
/// registered yet; this registers it).
///
/// # Panics
///
/// When the database cannot be reached or an operation fails.
pub async fn run(url: &str, s: Settings) -> Report {
    let mut config: tokio_postgres::Config = url.parse().expect("valid URL");
    config.application_name("pglock-bench");
    pglock_runtime::register("default", Config::new(config.clone()).max_size(80))
        .expect("register");
    pglock_runtime::register(
        "pipelined",
        Config::new(config).max_size(8).pipelined_release(true),
    )
    .expect("register");
    let mut r = Report::default();
    let mut push = |name, (value, p90): (f64, f64)| {
        r.rows.push(Row {
            name,
            value,
            p90: Some(p90),
            unit: "µs",
        });
    };

    // Baselines: one round trip.
    let raw = raw_client(url, "bench-raw").await;
    let select1 = raw.prepare("SELECT 1").await.unwrap();
    push(
        "raw SELECT 1",
        latency(s.iterations, || async {
            raw.query_one(&select1, &[]).await.unwrap();
        })
        .await,
    );
    let pooled = connection().await.unwrap();
    let select1p = pooled.prepare("SELECT 1").await.unwrap();
    push(
        "pool SELECT 1",
        latency(s.iterations, || async {
            pooled.query_one(&select1p, &[]).await.unwrap();
        })
        .await,
    );
    drop(pooled);
    let (lock, unlock) = (
        raw.prepare("SELECT pg_advisory_lock($1)").await.unwrap(),
        raw.prepare("SELECT pg_advisory_unlock($1)").await.unwrap(),
    );
    let k = KEY + 10;
    push(
        "raw lock+unlock",
        latency(s.iterations, || async {
            raw.query_one(&lock, &[&k]).await.unwrap();
            raw.query_one(&unlock, &[&k]).await.unwrap();
        })
        .await,
    );

    // pglock.
    push(
        "pglock acquire+release",
        latency(s.iterations, || async {
            advisory(KEY + 11)
                .acquire()
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        })
        .await,
    );
    push(
        "annotated async fn",
        latency(s.iterations, || async { annotated_empty().await.unwrap() }).await,
    );
    push(
        "annotated async fn, pipelined release",
        latency(s.iterations, || async {
            annotated_pipelined().await.unwrap()
        })
        .await,
    );
    push(
        "annotated xact",
        latency(s.iterations, || async { annotated_xact().await.unwrap() }).await,
    );
    push(
        "timeout = 0, free",
        latency(s.iterations, || async {
            assert!(skip_if_busy(KEY + 12).await)
        })
        .await,
    );
    let holder = raw_client(url, "bench-holder").await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&(KEY + 13)])
        .await
        .unwrap();
    push(
        "timeout = 0, busy",
        latency(s.iterations, || async {
            assert!(!skip_if_busy(KEY + 13).await)
        })
        .await,
    );
    let n = s.iterations;
    let sync = tokio::task::spawn_blocking(move || {
        for _ in 0..(n / 10).max(3) {
            annotated_sync().unwrap();
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            annotated_sync().unwrap();
            v.push(t.elapsed());
        }
        median_p90(v)
    })
    .await
    .unwrap();
    push("annotated sync fn", sync);

    // Contended hand-off: two tasks alternating on one key.
    push("raw hand-off", handoff_raw(url, s.iterations).await);
    push("pglock hand-off", handoff_pglock(s.iterations).await);

    // Throughput.
    for tasks in [1usize, 8, 32] {
        for same_key in [false, true] {
            let raw_ops = throughput_raw(url, tasks, s.ops_per_task, same_key).await;
            let pg_ops = throughput_pglock(tasks, s.ops_per_task, same_key).await;
            let (rn, pn) = throughput_names(tasks, same_key);
            r.rows.push(Row {
                name: rn,
                value: raw_ops,
                p90: None,
                unit: "ops/s",
            });
            r.rows.push(Row {
                name: pn,
                value: pg_ops,
                p90: None,
                unit: "ops/s",
            });
        }
    }

    // Memory per held lock: 1,000 guards on one caller-supplied client.
    let (bytes, on_server) = memory_per_lock(url).await;
    r.rows.push(Row {
        name: "RSS per held lock (1,000 held)",
        value: bytes,
        p90: None,
        unit: "bytes",
    });
    r.rows.push(Row {
        name: "pg_locks rows while 1,000 held",
        value: on_server,
        p90: None,
        unit: "rows",
    });

    // Connection frugality.
    let (pg_conns, raw_conns) = frugality(url, &holder).await;
    r.rows.push(Row {
        name: "connections held, 100 pglock waiters",
        value: pg_conns,
        p90: None,
        unit: "conns",
    });
    r.rows.push(Row {
        name: "connections held, 100 raw waiters",
        value: raw_conns,
        p90: None,
        unit: "conns",
    });

    verdicts(&mut r);
    r
}

fn throughput_names(tasks: usize, same: bool) -> (&'static str, &'static str) {
    match (tasks, same) {
        (1, false) => ("raw 1 task, distinct keys", "pglock 1 task, distinct keys"),
        (1, true) => ("raw 1 task, one key", "pglock 1 task, one key"),
        (8, false) => (
            "raw 8 tasks, distinct keys",
            "pglock 8 tasks, distinct keys",
        ),
        (8, true) => ("raw 8 tasks, one key", "pglock 8 tasks, one key"),
        (32, false) => (
            "raw 32 tasks, distinct keys",
            "pglock 32 tasks, distinct keys",
        ),
        _ => ("raw 32 tasks, one key", "pglock 32 tasks, one key"),
    }
}

fn verdicts(r: &mut Report) {
    let ratio = |a: &str, b: &str| r.value(a) / r.value(b);
    let mut v = vec![
        (
            "annotated call / pool SELECT 1",
            ratio("annotated async fn", "pool SELECT 1"),
            "≤ 1.2",
            1.2,
            true,
        ),
        (
            "annotated call, pipelined / pool SELECT 1",
            ratio("annotated async fn, pipelined release", "pool SELECT 1"),
            "≤ 1.2",
            1.2,
            true,
        ),
        (
            "busy timeout = 0 / pool SELECT 1",
            ratio("timeout = 0, busy", "pool SELECT 1"),
            "≤ 1.1",
            1.1,
            true,
        ),
        (
            "8-task distinct-key throughput / raw",
            ratio(
                "pglock 8 tasks, distinct keys",
                "raw 8 tasks, distinct keys",
            ),
            "≥ 0.9",
            0.9,
            false,
        ),
        (
            "hand-off / raw ping-pong",
            ratio("pglock hand-off", "raw hand-off"),
            "≤ 1.2",
            1.2,
            true,
        ),
        (
            "connections held by 100 waiters",
            r.value("connections held, 100 pglock waiters"),
            "≤ 2",
            2.0,
            true,
        ),
    ];
    r.verdicts = v
        .drain(..)
        .map(|(name, measured, target, limit, below)| Verdict {
            name,
            measured,
            target,
            pass: if below {
                measured <= limit
            } else {
                measured >= limit
            },
        })
        .collect();
}

async fn handoff_raw(url: &str, n: usize) -> (f64, f64) {
    let a = raw_client(url, "bench-a").await;
    let b = raw_client(url, "bench-b").await;
    let key = KEY + 20;
    let mut samples = Vec::with_capacity(n);
    // A holds; B waits on the server; A releases: B's grant is the hand-off.
    a.execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let (mut holder, mut waiter) = (a, b);
    for _ in 0..n {
        let w = tokio::spawn(async move {
            waiter
                .execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .unwrap();
            waiter
        });
        tokio::time::sleep(Duration::from_micros(300)).await;
        let t = Instant::now();
        holder
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .unwrap();
        let next = w.await.unwrap();
        samples.push(t.elapsed());
        waiter = holder;
        holder = next;
    }
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    median_p90(samples)
}

async fn handoff_pglock(n: usize) -> (f64, f64) {
    let key = KEY + 21;
    let mut samples = Vec::with_capacity(n);
    let mut holder = advisory(key).acquire().await.unwrap();
    for _ in 0..n {
        let w = tokio::spawn(async move { advisory(key).acquire().await.unwrap() });
        tokio::time::sleep(Duration::from_micros(300)).await;
        let t = Instant::now();
        holder.release().await.unwrap();
        holder = w.await.unwrap();
        samples.push(t.elapsed());
    }
    holder.release().await.unwrap();
    median_p90(samples)
}

async fn throughput_raw(url: &str, tasks: usize, ops: usize, same_key: bool) -> f64 {
    let mut clients = Vec::new();
    for _ in 0..tasks {
        clients.push(raw_client(url, "bench-tp").await);
    }
    let started = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let key = if same_key {
                KEY + 30
            } else {
                KEY + 100 + i as i64
            };
            tokio::spawn(async move {
                let (l, u) = (
                    c.prepare("SELECT pg_advisory_lock($1)").await.unwrap(),
                    c.prepare("SELECT pg_advisory_unlock($1)").await.unwrap(),
                );
                for _ in 0..ops {
                    c.query_one(&l, &[&key]).await.unwrap();
                    c.query_one(&u, &[&key]).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    (tasks * ops) as f64 / started.elapsed().as_secs_f64()
}

async fn throughput_pglock(tasks: usize, ops: usize, same_key: bool) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let key = if same_key {
                KEY + 31
            } else {
                KEY + 200 + i as i64
            };
            tokio::spawn(async move {
                for _ in 0..ops {
                    advisory(key).run(async {}).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    (tasks * ops) as f64 / started.elapsed().as_secs_f64()
}

fn rss_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |pages| pages * 4096.0)
}

async fn memory_per_lock(url: &str) -> (f64, f64) {
    let client = raw_client(url, "bench-memory").await;
    let obs = raw_client(url, "bench-observer").await;
    let before = rss_bytes();
    let mut guards = Vec::with_capacity(1000);
    for i in 0..1000 {
        guards.push(
            advisory(LockKey::Int(KEY + 1000 + i))
                .acquire_on(&client)
                .await
                .unwrap(),
        );
    }
    let after = rss_bytes();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let rows: i64 = obs
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    for g in guards {
        g.release().await.unwrap();
    }
    ((after - before) / 1000.0, rows as f64)
}

/// Connections held while 100 tasks wait for one exclusive key: pglock's are
/// those checked out of its pool; each raw waiter holds one. Also checked: the
/// waiters the server sees in `pg_locks`.
async fn frugality(url: &str, obs: &Client) -> (f64, f64) {
    let key = KEY + 40;
    let holder = raw_client(url, "bench-frugal-holder").await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let waiters_on_server = || async move {
        let n: i64 = obs
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND objid = $1 AND classid = $2",
                &[&(key as u32), &((key >> 32) as u32)],
            )
            .await
            .unwrap()
            .get(0);
        n as f64
    };
    let waiters: Vec<_> = (0..100)
        .map(|_| tokio::spawn(async move { advisory(key).run(async {}).await.unwrap() }))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (open, idle) = pglock_runtime::pool_status("default").unwrap_or((0, 0));
    let pg_held = open.saturating_sub(idle) as f64;
    assert!(
        waiters_on_server().await <= 1.0,
        "only the head waits on the server"
    );
    let mut raws = Vec::new();
    for _ in 0..100 {
        let c = raw_client(url, "bench-frugal-raw").await;
        raws.push(tokio::spawn(async move {
            c.execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .unwrap();
            c.execute("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .unwrap();
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every raw waiter holds its own session, all waiting on the server (with
    // pglock's single head waiter among them).
    let raw_held = waiters_on_server().await - 1.0;
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    for w in waiters {
        w.await.unwrap();
    }
    for r in raws {
        r.await.unwrap();
    }
    (pg_held, raw_held)
}

/// Prints the report as two tables.
pub fn print(r: &Report) {
    println!("{:<42} {:>14} {:>12}", "measurement", "median/value", "p90");
    for row in &r.rows {
        let p90 = row
            .p90
            .map_or(String::new(), |p| format!("{p:.1} {}", row.unit));
        println!(
            "{:<42} {:>9.1} {:<5} {:>12}",
            row.name, row.value, row.unit, p90
        );
    }
    println!();
    println!(
        "{:<42} {:>10} {:>8} {:>6}",
        "target (issue 6)", "measured", "target", ""
    );
    for v in &r.verdicts {
        println!(
            "{:<42} {:>10.2} {:>8} {:>6}",
            v.name,
            v.measured,
            v.target,
            if v.pass { "PASS" } else { "MISS" }
        );
    }
}
