//! The measurements beyond single-caller latency: round trips on the wire, the
//! contended hand-off, throughput, memory per held lock, and connection
//! frugality, each against its baseline.

use std::time::{Duration, Instant};

use pglock_runtime::{advisory, LockKey};
use pglock_testkit::observe::{backend_pid, session};
use tokio_postgres::Client;

use crate::ops::{counted, Env};
use crate::process::{cpu_micros, rss_bytes};
use crate::report::WireRow;
use crate::sample::median_p90;
use crate::{wire, KEY};

/// Delay the proxy adds to every server reply when counting critical-path round
/// trips.
const WIRE_DELAY: Duration = Duration::from_millis(4);

/// Round trips per operation on the wire (through `proxy`), and the round trips
/// on each operation's critical path (with every server reply delayed).
pub(crate) async fn wire_counts(
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

/// Hand-off latency, raw and pglock interleaved: a holder releases while a waiter
/// is queued; timed from the release call to the waiter holding the lock.
pub(crate) async fn handoff(url: &str, n: usize) -> ((f64, f64), (f64, f64)) {
    let a = session(url, "bench-a").await;
    let b = session(url, "bench-b").await;
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
pub(crate) async fn throughput(url: &str, tasks: usize, ops: usize, same_key: bool) -> Throughput {
    let mut clients = Vec::new();
    for i in 0..tasks {
        let c = session(url, "bench-tp").await;
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

/// Operations per second and client CPU per operation, raw and pglock.
pub(crate) struct Throughput {
    pub(crate) raw: f64,
    pub(crate) pglock: f64,
    pub(crate) raw_cpu: f64,
    pub(crate) pglock_cpu: f64,
}

/// The raw and pglock row names of a throughput measurement.
pub(crate) fn throughput_names(tasks: usize, same: bool) -> (&'static str, &'static str) {
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

/// Resident memory per held lock, and the `pg_locks` rows, while one client holds
/// 1,000 session locks.
pub(crate) async fn memory_per_lock(url: &str) -> (f64, f64) {
    let client = session(url, "bench-memory").await;
    let obs = session(url, "bench-observer").await;
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
    let pid = backend_pid(&client).await;
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
pub(crate) async fn frugality(url: &str, obs: &Client) -> [f64; 4] {
    let key = KEY + 40;
    let holder = session(url, "bench-frugal-holder").await;
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
        let c = session(url, "bench-frugal-raw").await;
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
