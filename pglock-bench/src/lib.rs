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

mod ops;
mod process;
mod report;
mod sample;
mod scans;
mod scenarios;
pub mod wire;

use pglock_runtime::Config;
use pglock_testkit::observe::session;

pub use process::cpu_micros;
pub use report::{print, slot_verdict_names, to_json, Report, Row, Verdict, WireRow};
pub use wire::host_port;

use ops::{plain, Env};
use report::{slot_ratios, verdicts};
use sample::interleaved;
use scenarios::{frugality, handoff, memory_per_lock, throughput, throughput_names, wire_counts};

/// Key bases, far from anything else.
const KEY: i64 = 0x7E57_0000_0000;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Samples per latency row.
    pub iterations: usize,
    /// Operations per task in throughput rows.
    pub ops_per_task: usize,
}

/// Runs every measurement against `url` (the aliases `"default"`, `"lat"`,
/// `"lat-awaited"`, `"counted"`, `"counted-awaited"`, `"frugal"` and `"scan"`
/// must not be registered yet; this registers them).
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
    let holder = session(url, "bench-holder").await;
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
    slot_ratios(&mut r);

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

    // Return and periodic checks with 0 and 10,000 foreign locks (issue 17.2).
    scan_rows(url, &config, s.iterations, &mut r).await;

    verdicts(&mut r);
    scans::verdicts(&mut r);
    r
}

/// Only the rows of the return and periodic checks with 0 and 10,000 advisory
/// locks held by another session, and their targets (issue 17.2): a short run
/// (`cargo run --release -p pglock-bench -- --scans`). Registers the alias
/// `"scan"`.
///
/// ```no_run
/// # async fn f() {
/// let url = pglock_testkit::database_url();
/// let report = pglock_bench::run_scans(&url, 1000).await;
/// pglock_bench::print(&report);
/// # }
/// ```
///
/// # Panics
///
/// When the database cannot be reached or an operation fails.
pub async fn run_scans(url: &str, iterations: usize) -> Report {
    let mut config: tokio_postgres::Config = url.parse().expect("valid URL");
    config.application_name("pglock-bench");
    let mut r = Report::default();
    scan_rows(url, &config, iterations, &mut r).await;
    scans::verdicts(&mut r);
    r
}

async fn scan_rows(url: &str, config: &tokio_postgres::Config, n: usize, r: &mut Report) {
    pglock_runtime::register("scan", Config::new(config.clone()).max_size(1)).expect("register");
    scans::scans(url, "scan", n, r).await;
}
