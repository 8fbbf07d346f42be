//! Scheduled jobs across a fleet of processes: each `slot-worker` subprocess runs
//! the same job on the same schedule, its ticks offset from the others' (clock skew,
//! start-up offsets), and the runs are counted in the database, per tick and per
//! slot of the database's clock (`date_bin` over the server's `clock_timestamp()`).
//!
//! Today `#[advisory_lock(timeout = 0, on_fail = skip)]` prevents overlapping runs,
//! not a second run of the same tick: a job faster than the spread of the ticks runs
//! on several instances per tick (issue 12). The first test documents that hole.
//!
//! `cargo test -p pglock-tests --test slots -- --nocapture` prints the counts.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pglock_tests::*;

/// Tick period of every worker.
const PERIOD_MS: u64 = 1000;
/// How long the job body takes once it has recorded its run.
const JOB_MS: u64 = 5;
/// Ticks per worker.
const TICKS: u64 = 6;
/// Schedule offsets of the workers (one worker each), within a period: clock skew
/// and start-up offsets between instances.
const OFFSETS_MS: [u64; 4] = [0, 100, 200, 300];

/// What a fleet did, as the database recorded it.
struct Fleet {
    /// The job's name in pglock's record of runs (the annotated function's path).
    job: String,
    /// The lock's key, a string: its name is recorded by the workers.
    key: String,
    /// The workers' schedule offsets.
    offsets: Vec<u64>,
    /// Ticks the fleet was scheduled for (periods since the epoch), in order.
    ticks: Vec<i64>,
    /// Runs per tick, as the workers named their tick.
    per_tick: BTreeMap<i64, i64>,
    /// Runs per period of the database's clock (`date_bin` of the row's
    /// `clock_timestamp()`), keyed by the period's number since the epoch.
    per_db_slot: BTreeMap<i64, i64>,
    /// Runs and skips the workers reported.
    ran: u64,
    skipped: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Runs one `slot-worker` per offset in `offsets` with `mode`, all on the same
/// tick grid and lock key, waits for them (killed, and the test failed, after 60
/// s), and counts the runs they recorded in a table of their own. Checks what
/// holds in every mode: each worker exits cleanly having called the job on each of
/// its ticks, and the rows in the table are exactly the runs the workers report.
async fn fleet(mode: &str, offsets: &[u64]) -> Fleet {
    let obs = observer().await;
    let id = unique_key().unsigned_abs();
    let table = format!("slot_runs_{id}");
    obs.batch_execute(&format!(
        "CREATE TABLE {table} (worker text NOT NULL, tick bigint NOT NULL, \
         at timestamptz NOT NULL DEFAULT clock_timestamp())"
    ))
    .await
    .expect("create the runs table");
    let key = format!("slots::{table}");
    // A common grid: the workers' tick k falls in the same period whenever each
    // process started. Three periods ahead leaves time to start them.
    let start = (now_ms() / PERIOD_MS + 3) * PERIOD_MS;
    let ticks: Vec<i64> = (0..TICKS)
        .map(|k| ((start + k * PERIOD_MS) / PERIOD_MS) as i64)
        .collect();
    let children: Vec<_> = offsets
        .iter()
        .enumerate()
        .map(|(i, offset)| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_slot-worker"))
                .args(["--url", url()])
                .args(["--name", &format!("slot-worker-{id}-{i}")])
                .args(["--key", &key])
                .args(["--table", &table])
                .args(["--mode", mode])
                .args(["--period-ms", &PERIOD_MS.to_string()])
                .args(["--offset-ms", &offset.to_string()])
                .args(["--ticks", &TICKS.to_string()])
                .args(["--job-ms", &JOB_MS.to_string()])
                .args(["--start-ms", &start.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // If the bounded wait below gives up, dropping the waits kills them.
                .kill_on_drop(true)
                .spawn()
                .expect("slot-worker starts")
        })
        .collect();
    let outputs = within(
        60,
        "slot workers",
        futures_util::future::join_all(children.into_iter().map(|c| c.wait_with_output())),
    )
    .await;
    let (mut ran, mut skipped) = (0u64, 0u64);
    for out in outputs {
        let out = out.expect("wait for a slot-worker");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "slot-worker failed: {}, stdout {stdout:?}, stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let f: Vec<u64> = match stdout.split_whitespace().collect::<Vec<_>>()[..] {
            ["ok", r, s] => vec![r.parse().unwrap(), s.parse().unwrap()],
            _ => panic!("unexpected slot-worker output {stdout:?}"),
        };
        assert_eq!(f[0] + f[1], TICKS, "a worker called the job on each tick");
        ran += f[0];
        skipped += f[1];
    }
    let counts = |sql: String| {
        let obs = &obs;
        async move {
            obs.query(&sql, &[])
                .await
                .expect("count the runs")
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
                .collect::<BTreeMap<i64, i64>>()
        }
    };
    let per_tick = counts(format!(
        "SELECT tick, count(*) FROM {table} GROUP BY tick ORDER BY tick"
    ))
    .await;
    let per_db_slot = counts(format!(
        "SELECT (extract(epoch FROM date_bin(interval '{PERIOD_MS} milliseconds', at, \
         timestamptz 'epoch')) * 1000)::bigint / {PERIOD_MS}, count(*) \
         FROM {table} GROUP BY 1 ORDER BY 1"
    ))
    .await;
    let rows: i64 = per_tick.values().sum();
    assert_eq!(
        rows as u64, ran,
        "the table holds exactly the reported runs"
    );
    obs.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("drop the runs table");
    Fleet {
        job: format!("slot_worker::job_{mode}"),
        key,
        offsets: offsets.to_vec(),
        ticks,
        per_tick,
        per_db_slot,
        ran,
        skipped,
    }
}

fn report(name: &str, f: &Fleet, started: Instant) {
    let show = |m: &BTreeMap<i64, i64>| {
        m.iter()
            .map(|(t, n)| format!("{t}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!(
        "slots {name}: {} workers (offsets {:?} ms, period {PERIOD_MS} ms, job {JOB_MS} ms) \
         x {TICKS} ticks: {} runs, {} skips; runs per tick [{}]; per database second [{}]; {:?}",
        f.offsets.len(),
        f.offsets,
        f.ran,
        f.skipped,
        show(&f.per_tick),
        show(&f.per_db_slot),
        started.elapsed()
    );
}

/// Issue 12, the hole: with the lock alone, a job faster than the spread of the
/// instances' ticks runs on several of them for the same tick, and in the same
/// second of the database's clock. Flips once `once_per` exists (a second mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_alone_runs_a_fast_job_more_than_once_per_tick() {
    setup();
    let started = Instant::now();
    let f = fleet("lock", &OFFSETS_MS).await;
    report("lock", &f, started);
    // The lock does make sure some instance runs each tick...
    assert_eq!(
        f.per_tick.keys().copied().collect::<Vec<_>>(),
        f.ticks,
        "every tick ran somewhere"
    );
    // ...but not only one.
    assert!(
        f.per_tick.values().any(|&n| n > 1),
        "expected a tick run by more than one worker: {:?}",
        f.per_tick
    );
    assert!(
        f.per_db_slot.values().any(|&n| n > 1),
        "expected a second of the database's clock with more than one run: {:?}",
        f.per_db_slot
    );
}

/// Exactly one run per tick, counted in the test table and in pglock's own
/// record of runs (one row per slot, each finished `succeeded`).
async fn exactly_once_per_tick(mode: &str) {
    setup();
    let started = Instant::now();
    let f = fleet(mode, &OFFSETS_MS).await;
    report(mode, &f, started);
    let once: BTreeMap<i64, i64> = f.ticks.iter().map(|t| (*t, 1)).collect();
    assert_eq!(f.per_tick, once, "one run per tick");
    assert_eq!(
        f.ran + f.skipped,
        TICKS * OFFSETS_MS.len() as u64,
        "every worker called the job on every tick"
    );
    assert_eq!(f.ran, TICKS, "the others skipped");
    let db = observer().await;
    let (first, last) = (f.ticks[0], f.ticks[f.ticks.len() - 1]);
    let rows = db
        .query(
            "SELECT slot, outcome, application_name FROM pglock.runs \
             WHERE job = $1 AND slot_start BETWEEN to_timestamp($2) AND to_timestamp($3) \
             ORDER BY slot",
            &[&f.job, &(first as f64), &(last as f64)],
        )
        .await
        .expect("pglock.runs");
    assert_eq!(rows.len(), f.ticks.len(), "one recorded run per slot");
    // The workers recorded the lock's name: this process never used it.
    let (c, o, s) = pglock_runtime::LockKey::string(&f.key).pg_locks_ids();
    let named: i64 = db
        .query_one(
            "SELECT count(*) FROM pglock.lock_names \
             WHERE classid = $1 AND objid = $2 AND objsubid = $3 AND name = $4",
            &[&c, &o, &s, &f.key],
        )
        .await
        .expect("pglock.lock_names")
        .get(0);
    assert_eq!(named, 1, "the workers recorded the lock's name");
    for row in rows {
        assert_eq!(
            row.get::<_, &str>(1),
            "succeeded",
            "{:?}",
            row.get::<_, &str>(0)
        );
        assert!(
            row.get::<_, &str>(2).starts_with("slot-worker-"),
            "run recorded with the worker's application_name"
        );
    }
}

/// Issue 12, the fix: with `once_per = "1s"` the same fleet runs each tick once,
/// on the database's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_per_runs_a_fast_job_exactly_once_per_tick() {
    exactly_once_per_tick("once_per").await;
}

/// With `slot = <planned time>` the slot is the scheduler's, not a clock's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_slot_runs_a_fast_job_exactly_once_per_tick() {
    exactly_once_per_tick("slot").await;
}
