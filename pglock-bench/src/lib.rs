//! pglock's benchmark. Every figure is measured in one run, on one throw-away
//! cluster, next to the baseline it is compared with, because these machines are
//! noisy: only the ratios mean anything.
//!
//! Latencies are sampled *interleaved*: each iteration runs every operation once,
//! so a baseline and the pglock operation compared with it see the same machine
//! state (on the 2-core machines this was written on, loopback round trips flip
//! between ~10 µs and ~80 µs modes for seconds at a time, which made medians of
//! back-to-back blocks incomparable). Round trips per operation are counted on the
//! wire by a loopback proxy ([`wire`]).
//!
//! Run it with `cargo run --release -p pglock-bench` (see BENCHMARKS.md).

pub mod wire;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use pglock_runtime::{advisory, connection_for, Config, Error, LockKey};
use tokio_postgres::{Client, NoTls, Statement};

/// Key bases, far from anything else.
const KEY: i64 = 0x7E57_0000_0000;

/// Delay the proxy adds to every server reply when counting critical-path round
/// trips.
const WIRE_DELAY: Duration = Duration::from_millis(4);

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub name: &'static str,
    /// Median, or throughput for `ops/s` rows, or a count.
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

/// Round trips of one operation, measured on the wire (per operation).
#[derive(Debug, Clone)]
pub struct WireRow {
    /// The operation.
    pub name: &'static str,
    /// Client sends that followed server output.
    pub turns: f64,
    /// `Sync` + simple `Query` messages (statement batches the server answers).
    pub syncs: f64,
    /// `Parse` messages (statements prepared).
    pub parses: f64,
    /// New server connections.
    pub connects: f64,
    /// Median latency with every server reply delayed by a few milliseconds,
    /// divided by the same for a raw `SELECT 1`: round trips the caller waits for.
    pub critical_path: f64,
    /// Statements executed, by SQL text.
    pub statements: Vec<(String, f64)>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Measurements.
    pub rows: Vec<Row>,
    /// Round trips per operation.
    pub wire: Vec<WireRow>,
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

    fn push(&mut self, name: &'static str, value: f64, p90: Option<f64>, unit: &'static str) {
        self.rows.push(Row {
            name,
            value,
            p90,
            unit,
        });
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

async fn raw_client(url: &str, app: &str) -> Client {
    let mut config: tokio_postgres::Config = url.parse().expect("valid URL");
    config.application_name(app);
    let (client, conn) = config.connect(NoTls).await.expect("connects");
    tokio::spawn(conn);
    client
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// One operation; `Some(d)` when it times itself (only part of what it does is
/// the measured operation), `None` to be timed whole.
type Op<'a> = Box<dyn FnMut() -> BoxFut<'a, Option<Duration>> + Send + 'a>;

/// The annotated functions of one alias pair, as plain function pointers.
struct Fns {
    empty: fn() -> BoxFut<'static, Result<(), Error>>,
    awaited: fn() -> BoxFut<'static, Result<(), Error>>,
    xact: fn() -> BoxFut<'static, Result<(), Error>>,
    skip_if_busy: fn(i64) -> BoxFut<'static, bool>,
    sync: fn() -> Result<(), Error>,
}

macro_rules! annotated {
    ($m:ident, $alias:tt, $awaited:tt) => {
        /// The measured annotated functions, on one alias.
        mod $m {
            use super::{BoxFut, Fns, KEY};
            use pglock_runtime::{advisory_lock, Error};

            #[advisory_lock(key = KEY + 1, using = $alias)]
            async fn empty() -> Result<(), Error> {
                Ok(())
            }

            #[advisory_lock(key = KEY + 5, using = $awaited)]
            async fn awaited() -> Result<(), Error> {
                Ok(())
            }

            #[advisory_lock(key = KEY + 2, xact, using = $alias)]
            async fn xact() -> Result<(), Error> {
                Ok(())
            }

            #[advisory_lock(key = key, timeout = 0, on_fail = skip, using = $alias)]
            async fn skip_if_busy(key: i64) -> bool {
                true
            }

            #[advisory_lock(key = KEY + 4, using = $alias)]
            fn sync() -> Result<(), Error> {
                Ok(())
            }

            pub(super) const FNS: Fns = Fns {
                empty: || -> BoxFut<'static, _> { Box::pin(empty()) },
                awaited: || -> BoxFut<'static, _> { Box::pin(awaited()) },
                xact: || -> BoxFut<'static, _> { Box::pin(xact()) },
                skip_if_busy: |k| -> BoxFut<'static, _> { Box::pin(skip_if_busy(k)) },
                sync,
            };
        }
    };
}

annotated!(plain, "lat", "lat-awaited");
annotated!(counted, "counted", "counted-awaited");

/// What one set of operations runs against: a raw client and a pglock alias.
struct Env {
    raw: Client,
    select1: Statement,
    lock: Statement,
    unlock: Statement,
    /// `SELECT 1` prepared on the alias's one connection (by backend pid).
    pool_select1: tokio::sync::Mutex<Option<(i32, Statement)>>,
    alias: &'static str,
    busy_key: i64,
    fns: Fns,
}

impl Env {
    async fn new(raw_url: &str, alias: &'static str, busy_key: i64, fns: Fns) -> Env {
        let raw = raw_client(raw_url, "bench-raw").await;
        Env {
            select1: raw.prepare("SELECT 1").await.unwrap(),
            lock: raw.prepare("SELECT pg_advisory_lock($1)").await.unwrap(),
            unlock: raw.prepare("SELECT pg_advisory_unlock($1)").await.unwrap(),
            pool_select1: tokio::sync::Mutex::new(None),
            raw,
            alias,
            busy_key,
            fns,
        }
    }

    /// Every single-caller operation, by row name.
    fn ops(&self) -> Vec<(&'static str, Op<'_>)> {
        let e = self;
        let alias = e.alias;
        let fns = &e.fns;
        let busy = e.busy_key;
        let empty = fns.empty;
        let awaited = fns.awaited;
        let xact = fns.xact;
        let skip = fns.skip_if_busy;
        let sync = fns.sync;
        vec![
            (
                "raw SELECT 1",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        e.raw.query_one(&e.select1, &[]).await.unwrap();
                        None
                    })
                }) as Op<'_>,
            ),
            (
                "pool SELECT 1",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let c = connection_for(alias).await.unwrap();
                        let mut cached = e.pool_select1.lock().await;
                        let stmt = match &*cached {
                            Some((pid, s)) if *pid == c.backend_pid() => s.clone(),
                            _ => {
                                let s = c.prepare("SELECT 1").await.unwrap();
                                *cached = Some((c.backend_pid(), s.clone()));
                                s
                            }
                        };
                        let t = Instant::now();
                        c.query_one(&stmt, &[]).await.unwrap();
                        let d = t.elapsed();
                        drop(c);
                        settle(alias).await;
                        Some(d)
                    })
                }),
            ),
            (
                "pool checkout + return",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let t = Instant::now();
                        drop(connection_for(alias).await.unwrap());
                        let d = t.elapsed();
                        settle(alias).await;
                        Some(d)
                    })
                }),
            ),
            (
                "raw lock+unlock",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let k = KEY + 10;
                        e.raw.query_one(&e.lock, &[&k]).await.unwrap();
                        e.raw.query_one(&e.unlock, &[&k]).await.unwrap();
                        None
                    })
                }),
            ),
            (
                "pglock acquire+release",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let g = advisory(KEY + 11).using(alias).acquire().await.unwrap();
                        g.release().await.unwrap();
                        None
                    })
                }),
            ),
            (
                "pglock run(async {})",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        advisory(KEY + 14).using(alias).run(async {}).await.unwrap();
                        None
                    })
                }),
            ),
            (
                "annotated async fn",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        empty().await.unwrap();
                        None
                    })
                }),
            ),
            (
                "annotated async fn, awaited release",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        awaited().await.unwrap();
                        None
                    })
                }),
            ),
            (
                "annotated xact",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        xact().await.unwrap();
                        None
                    })
                }),
            ),
            (
                "timeout = 0, free",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        assert!(skip(KEY + 12).await);
                        None
                    })
                }),
            ),
            (
                "timeout = 0, busy (skip)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        assert!(!skip(busy).await);
                        None
                    })
                }),
            ),
            (
                "no_wait, busy (raise, names holders)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let err = advisory(busy).using(alias).no_wait().acquire().await;
                        assert!(err.expect_err("busy").is_busy());
                        None
                    })
                }),
            ),
            (
                "annotated sync fn (block_in_place)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        tokio::task::block_in_place(|| sync().unwrap());
                        None
                    })
                }),
            ),
        ]
    }
}

/// Waits until every connection of `alias` is back in its pool (after a checkout
/// whose return waits for a server-side check), so that the next operation does
/// not pay for it.
async fn settle(alias: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match pglock_runtime::pool_status(alias) {
            Some(s) if s.open == s.idle => return,
            _ => tokio::task::yield_now().await,
        }
    }
    panic!("the connections of alias `{alias}` did not come back to the pool");
}

/// Samples every operation `n` times, interleaved (one of each per iteration).
async fn interleaved(n: usize, ops: &mut [(&'static str, Op<'_>)]) -> Vec<(f64, f64)> {
    let mut samples: Vec<Vec<Duration>> = ops.iter().map(|_| Vec::with_capacity(n)).collect();
    for i in 0..n + (n / 10).max(3) {
        for (j, (_, op)) in ops.iter_mut().enumerate() {
            let t = Instant::now();
            let d = op().await.unwrap_or_else(|| t.elapsed());
            if i >= (n / 10).max(3) {
                samples[j].push(d);
            }
        }
    }
    samples.into_iter().map(median_p90).collect()
}

/// Runs every measurement against `url` (the aliases `"default"`, `"lat"`,
/// `"lat-awaited"`, `"counted"`, `"counted-awaited"` and `"frugal"` must not be
/// registered yet; this registers them).
///
/// # Panics
///
/// When the database cannot be reached or an operation fails.
pub async fn run(url: &str, s: Settings) -> Report {
    let mut config: tokio_postgres::Config = url.parse().expect("valid URL");
    config.application_name("pglock-bench");
    let register = |alias: &str, c: Config| pglock_runtime::register(alias, c).expect("register");
    register("default", Config::new(config.clone()).max_size(80));
    // Single-caller latencies: one connection per alias, so that every pglock
    // operation and the pool's `SELECT 1` run on the same server backend (round
    // trips on these VMs are fast or slow per backend, by where the scheduler
    // put it: comparing operations on different backends compares luck).
    register("lat", Config::new(config.clone()).max_size(1));
    register(
        "lat-awaited",
        Config::new(config.clone())
            .max_size(1)
            .pipelined_release(false),
    );
    let mut frugal = config.clone();
    frugal.application_name("pglock-bench-frugal");
    register("frugal", Config::new(frugal).max_size(110));
    let proxy = wire::WireCounter::start(host_port(&config)).await;
    let counted_url = proxy.url(url);
    let mut counted: tokio_postgres::Config = counted_url.parse().expect("proxy URL");
    counted.application_name("pglock-bench-counted");
    register("counted", Config::new(counted.clone()).max_size(1));
    register(
        "counted-awaited",
        Config::new(counted).max_size(1).pipelined_release(false),
    );

    let mut r = Report::default();
    // Someone else holds this key for the busy rows.
    let holder = raw_client(url, "bench-holder").await;
    let busy_key = KEY + 13;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&busy_key])
        .await
        .unwrap();

    // Single-caller latencies, interleaved.
    let env = Env::new(url, "lat", busy_key, plain::FNS).await;
    let mut ops = env.ops();
    let results = interleaved(s.iterations, &mut ops).await;
    for ((name, _), (m, p)) in ops.iter().zip(results) {
        r.push(name, m, Some(p), "µs");
    }
    drop(ops);

    // Round trips per operation, on the wire.
    r.wire = wire_counts(&proxy, &counted_url, busy_key, s.iterations.min(20)).await;

    // Contended hand-off: two tasks alternating on one key, interleaved.
    let (raw_h, pg_h) = handoff(url, s.iterations.min(1000)).await;
    r.push("raw hand-off", raw_h.0, Some(raw_h.1), "µs");
    r.push("pglock hand-off", pg_h.0, Some(pg_h.1), "µs");

    // Throughput.
    for tasks in [1usize, 8, 32] {
        for same_key in [false, true] {
            let t = throughput(url, tasks, s.ops_per_task, same_key).await;
            let (rn, pn) = throughput_names(tasks, same_key);
            r.push(rn, t.raw, None, "ops/s");
            r.push(pn, t.pglock, None, "ops/s");
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            r.push(leak(format!("{rn}: client CPU/op")), t.raw_cpu, None, "µs");
            r.push(
                leak(format!("{pn}: client CPU/op")),
                t.pglock_cpu,
                None,
                "µs",
            );
        }
    }

    // Memory per held lock: 1,000 guards on one caller-supplied client.
    let (bytes, on_server) = memory_per_lock(url).await;
    r.push("RSS per held lock (1,000 held)", bytes, None, "bytes");
    r.push("pg_locks rows while 1,000 held", on_server, None, "rows");

    // Connection frugality, counted by the server.
    let f = frugality(url, &holder).await;
    r.push(
        "100 pglock waiters: server connections",
        f[0],
        None,
        "conns",
    );
    r.push("100 pglock waiters: waiting on server", f[1], None, "conns");
    r.push("100 raw waiters: server connections", f[2], None, "conns");
    r.push("100 raw waiters: waiting on server", f[3], None, "conns");

    verdicts(&mut r);
    r
}

/// `host:port` of a URL's first TCP host (for [`wire::WireCounter::start`]).
pub fn host_port(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

async fn wire_counts(
    proxy: &wire::WireCounter,
    counted_url: &str,
    busy_key: i64,
    n: usize,
) -> Vec<WireRow> {
    let env = Env::new(counted_url, "counted", busy_key, counted::FNS).await;
    let mut ops = env.ops();
    let mut rows = Vec::new();
    let mut one_round_trip = f64::NAN;
    for (name, op) in &mut ops {
        // Enough to have prepared statements on the alias's connection.
        for _ in 0..20 {
            op().await;
        }
        // Let pipelined replies and background checks settle.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = proxy.snapshot();
        for _ in 0..n {
            op().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = proxy.snapshot().since(&before);
        proxy.set_delay(WIRE_DELAY);
        op().await;
        let mut v = Vec::with_capacity(n.min(10));
        for _ in 0..n.min(10) {
            let t = Instant::now();
            let d = op().await.unwrap_or_else(|| t.elapsed());
            v.push(d);
        }
        proxy.set_delay(Duration::ZERO);
        tokio::time::sleep(WIRE_DELAY * 2).await;
        let per = |x: u64| x as f64 / n as f64;
        let delayed = median_p90(v).0;
        if one_round_trip.is_nan() {
            // The first operation is a raw SELECT 1: one round trip, plus the
            // delay line's timer granularity, which every operation shares.
            one_round_trip = delayed;
        }
        rows.push(WireRow {
            name,
            turns: per(d.turns),
            syncs: per(d.syncs),
            parses: per(d.parses),
            connects: per(d.connects),
            critical_path: delayed / one_round_trip,
            statements: d.statements.into_iter().map(|(k, c)| (k, per(c))).collect(),
        });
    }
    rows
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
    let v = [
        (
            "annotated call / pool SELECT 1",
            ratio("annotated async fn", "pool SELECT 1"),
            "≤ 1.2",
            1.2,
            true,
        ),
        (
            "busy timeout = 0 / pool SELECT 1",
            ratio("timeout = 0, busy (skip)", "pool SELECT 1"),
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
            "server connections, 100 waiters",
            r.value("100 pglock waiters: server connections"),
            "≤ 2",
            2.0,
            true,
        ),
    ];
    r.verdicts = v
        .into_iter()
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

/// Hand-off latency, raw and pglock interleaved: a holder releases while a waiter
/// is queued; timed from the release call to the waiter holding the lock.
async fn handoff(url: &str, n: usize) -> ((f64, f64), (f64, f64)) {
    let a = raw_client(url, "bench-a").await;
    let b = raw_client(url, "bench-b").await;
    let (rk, pk) = (KEY + 20, KEY + 21);
    let (mut raw_s, mut pg_s) = (Vec::with_capacity(n), Vec::with_capacity(n));
    a.execute("SELECT pg_advisory_lock($1)", &[&rk])
        .await
        .unwrap();
    let (mut holder, mut waiter) = (a, b);
    let mut guard = advisory(pk).acquire().await.unwrap();
    for _ in 0..n {
        // Raw: both sessions wait on the server.
        let w = tokio::spawn(async move {
            waiter
                .execute("SELECT pg_advisory_lock($1)", &[&rk])
                .await
                .unwrap();
            waiter
        });
        tokio::time::sleep(Duration::from_micros(300)).await;
        let t = Instant::now();
        holder
            .execute("SELECT pg_advisory_unlock($1)", &[&rk])
            .await
            .unwrap();
        let next = w.await.unwrap();
        raw_s.push(t.elapsed());
        waiter = holder;
        holder = next;
        // pglock: one process, so the waiter queues in-process.
        let w = tokio::spawn(async move { advisory(pk).acquire().await.unwrap() });
        tokio::time::sleep(Duration::from_micros(300)).await;
        let t = Instant::now();
        guard.release().await.unwrap();
        guard = w.await.unwrap();
        pg_s.push(t.elapsed());
    }
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&rk])
        .await
        .unwrap();
    guard.release().await.unwrap();
    (median_p90(raw_s), median_p90(pg_s))
}

/// Lock+unlock throughput of `tasks` tasks, raw clients (one each) and pglock
/// `run(async {})`, in three alternating rounds after a warm-up that opens the
/// pool's connections: operations per second, and client CPU per operation
/// (this process's threads, including pglock's runtime).
async fn throughput(url: &str, tasks: usize, ops: usize, same_key: bool) -> Throughput {
    let mut clients = Vec::new();
    for i in 0..tasks {
        let c = raw_client(url, "bench-tp").await;
        let l = c.prepare("SELECT pg_advisory_lock($1)").await.unwrap();
        let u = c.prepare("SELECT pg_advisory_unlock($1)").await.unwrap();
        let key = if same_key {
            KEY + 30
        } else {
            KEY + 100 + i as i64
        };
        clients.push(std::sync::Arc::new((c, l, u, key)));
    }
    let pg_key = |i: usize| {
        if same_key {
            KEY + 31
        } else {
            KEY + 200 + i as i64
        }
    };
    let pglock_round = |per_task: usize| {
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                let key = pg_key(i);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        advisory(key).run(async {}).await.unwrap();
                    }
                })
            })
            .collect();
        async move {
            for h in handles {
                h.await.unwrap();
            }
        }
    };
    pglock_round(1).await;
    let per_round = ops.div_ceil(3);
    let (mut raw_t, mut pg_t) = (Duration::ZERO, Duration::ZERO);
    let (mut raw_cpu, mut pg_cpu) = (0.0, 0.0);
    for _ in 0..3 {
        let c0 = cpu_micros();
        let t = Instant::now();
        let handles: Vec<_> = clients
            .iter()
            .cloned()
            .map(|c| {
                tokio::spawn(async move {
                    let (c, l, u, key) = &*c;
                    for _ in 0..per_round {
                        c.query_one(l, &[key]).await.unwrap();
                        c.query_one(u, &[key]).await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        raw_t += t.elapsed();
        let c1 = cpu_micros();
        let t = Instant::now();
        pglock_round(per_round).await;
        pg_t += t.elapsed();
        raw_cpu += c1 - c0;
        pg_cpu += cpu_micros() - c1;
    }
    let total = (tasks * per_round * 3) as f64;
    Throughput {
        raw: total / raw_t.as_secs_f64(),
        pglock: total / pg_t.as_secs_f64(),
        raw_cpu: raw_cpu / total,
        pglock_cpu: pg_cpu / total,
    }
}

struct Throughput {
    raw: f64,
    pglock: f64,
    raw_cpu: f64,
    pglock_cpu: f64,
}

/// CPU time this process's live threads have used, in µs
/// (`/proc/self/task/*/schedstat`, nanosecond resolution).
pub fn cpu_micros() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1000.0
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

/// Server connections open, and waiting on a lock, for one application name,
/// from `pg_stat_activity`.
async fn activity(obs: &Client, app: &str) -> (f64, f64) {
    let row = obs
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') \
             FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    (row.get::<_, i64>(0) as f64, row.get::<_, i64>(1) as f64)
}

/// 100 tasks of this process wait for one exclusive key held by another session:
/// pglock (a fresh alias whose pool could open 110 connections) against one
/// session per waiter. Returns pglock's server connections open and waiting,
/// then the raw ones, as `pg_stat_activity` shows them.
async fn frugality(url: &str, obs: &Client) -> [f64; 4] {
    let key = KEY + 40;
    let holder = raw_client(url, "bench-frugal-holder").await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let waiters: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move { advisory(key).using("frugal").run(async {}).await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (pg_open, pg_waiting) = activity(obs, "pglock-bench-frugal").await;
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
    let (raw_open, raw_waiting) = activity(obs, "bench-frugal-raw").await;
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
    [pg_open, pg_waiting, raw_open, raw_waiting]
}

/// Prints the report as tables.
pub fn print(r: &Report) {
    println!("{:<44} {:>14} {:>12}", "measurement", "median/value", "p90");
    for row in &r.rows {
        let p90 = row
            .p90
            .map_or(String::new(), |p| format!("{p:.1} {}", row.unit));
        println!(
            "{:<44} {:>9.1} {:<5} {:>12}",
            row.name, row.value, row.unit, p90
        );
    }
    println!();
    println!(
        "{:<44} {:>6} {:>6} {:>6} {:>8} {:>9}",
        "round trips per operation (wire)", "turns", "syncs", "parses", "connects", "critical"
    );
    for w in &r.wire {
        println!(
            "{:<44} {:>6.2} {:>6.2} {:>6.2} {:>8.2} {:>9.2}",
            w.name, w.turns, w.syncs, w.parses, w.connects, w.critical_path
        );
        for (sql, n) in &w.statements {
            println!("    {n:>5.2} × {sql}");
        }
    }
    println!();
    println!(
        "{:<44} {:>10} {:>8} {:>6}",
        "target (issue 6)", "measured", "target", ""
    );
    for v in &r.verdicts {
        println!(
            "{:<44} {:>10.2} {:>8} {:>6}",
            v.name,
            v.measured,
            v.target,
            if v.pass { "PASS" } else { "MISS" }
        );
    }
}

/// The report as JSON: `{"rows": [...], "wire": [...], "verdicts": [...]}`.
pub fn to_json(r: &Report) -> String {
    let num = |x: f64| {
        if x.is_finite() {
            serde_json::json!(x)
        } else {
            serde_json::Value::Null
        }
    };
    let rows: Vec<_> = r
        .rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "name": row.name,
                "value": num(row.value),
                "p90": row.p90.map(num),
                "unit": row.unit,
            })
        })
        .collect();
    let wire: Vec<_> = r
        .wire
        .iter()
        .map(|w| {
            serde_json::json!({
                "name": w.name,
                "turns": num(w.turns),
                "syncs": num(w.syncs),
                "parses": num(w.parses),
                "connects": num(w.connects),
                "critical_path": num(w.critical_path),
                "statements": w.statements.iter()
                    .map(|(sql, n)| serde_json::json!({"sql": sql, "per_op": num(*n)}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let verdicts: Vec<_> = r
        .verdicts
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": v.name,
                "measured": num(v.measured),
                "target": v.target,
                "pass": v.pass,
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "rows": rows,
        "wire": wire,
        "verdicts": verdicts,
    }))
    .expect("JSON")
}
