//! A scheduled-job worker process (run by `tests/slots.rs`, not by hand): one
//! instance of a fleet that runs the same job on the same schedule.
//!
//! ```text
//! slot-worker --url URL --name NAME --key KEY --table TABLE --mode lock|once_per|slot
//!             [--period-ms 1000] [--base-ms 100] [--offset-ms 0] [--ticks 6]
//!             [--job-ms 5] [--start-ms EPOCH_MS]
//! ```
//!
//! Tick `k` (0-based) fires at `START + k*PERIOD + BASE + OFFSET` milliseconds of the
//! local wall clock (since the Unix epoch). START is a multiple of PERIOD, by default
//! the next period boundary plus two periods (time to start up); give the same
//! `--start-ms` to every worker of a fleet so that their tick `k` falls in the same
//! period whatever moment each process started at. BASE keeps the ticks well inside
//! their period; OFFSET stands for clock skew or a start-up offset between
//! instances. A tick is named by its period's number, `(START + k*PERIOD) / PERIOD`
//! (the Unix second for a period of 1000 ms).
//!
//! Each tick calls the job, which (mode `lock`, the usage that has the hole) is
//! `#[advisory_lock(key = KEY, timeout = 0, on_fail = skip)]`, with `once_per =
//! "1s"` added in mode `once_per` and `slot = <the tick's planned time>` in mode
//! `slot`: its body inserts
//! `(NAME, tick)` into TABLE (which the caller created, with columns `worker text`,
//! `tick bigint` and `at timestamptz DEFAULT clock_timestamp()`) on the scope
//! connection, then sleeps JOB milliseconds. NAME is also the sessions'
//! `application_name`.
//!
//! Prints one line, `ok <ran> <skipped>`, and exits 0 (as with `on_fail = skip`
//! itself, a failure to acquire other than "busy" — logged as a warning — counts
//! as skipped: the rows in TABLE are what the caller counts); exits 1 when the job body
//! failed (the error on stderr) and 2 on bad arguments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pglock_runtime::{advisory_lock, Config};

const USAGE: &str =
    "usage: slot-worker --url URL --name NAME --key KEY --table TABLE --mode lock|once_per|slot \
                     [--period-ms 1000] [--base-ms 100] [--offset-ms 0] [--ticks 6] [--job-ms 5] \
                     [--start-ms EPOCH_MS]";

/// How the job is protected.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `#[advisory_lock(timeout = 0, on_fail = skip)]` alone.
    Lock,
    /// The same with `once_per = "1s"`: slots on the database's clock (the
    /// period must then be 1000 ms).
    OncePer,
    /// The same with `slot = <the tick's planned time>`.
    Slot,
}

struct Args {
    url: String,
    name: String,
    key: String,
    table: String,
    mode: Mode,
    period_ms: u64,
    base_ms: u64,
    offset_ms: u64,
    ticks: u64,
    job_ms: u64,
    start_ms: Option<u64>,
}

fn fail(message: &str) -> ! {
    eprintln!("slot-worker: {message}\n{USAGE}");
    std::process::exit(2);
}

fn number(flag: &str, value: &str) -> u64 {
    value.parse().unwrap_or_else(|_| {
        fail(&format!(
            "{flag} wants a number of milliseconds or ticks, got `{value}`"
        ))
    })
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        name: String::new(),
        key: String::new(),
        table: String::new(),
        mode: Mode::Lock,
        period_ms: 1000,
        base_ms: 100,
        offset_ms: 0,
        ticks: 6,
        job_ms: 5,
        start_ms: None,
    };
    let mut mode = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--url" => a.url = value,
            "--name" => a.name = value,
            "--key" => a.key = value,
            "--table" => a.table = value,
            "--mode" => {
                mode = Some(match value.as_str() {
                    "lock" => Mode::Lock,
                    "once_per" => Mode::OncePer,
                    "slot" => Mode::Slot,
                    other => fail(&format!(
                        "unknown mode `{other}` (known: lock, once_per, slot)"
                    )),
                })
            }
            "--period-ms" => a.period_ms = number(&flag, &value),
            "--base-ms" => a.base_ms = number(&flag, &value),
            "--offset-ms" => a.offset_ms = number(&flag, &value),
            "--ticks" => a.ticks = number(&flag, &value),
            "--job-ms" => a.job_ms = number(&flag, &value),
            "--start-ms" => a.start_ms = Some(number(&flag, &value)),
            other => fail(&format!("unknown argument `{other}`")),
        }
    }
    for (flag, v) in [
        ("--url", &a.url),
        ("--name", &a.name),
        ("--key", &a.key),
        ("--table", &a.table),
    ] {
        if v.is_empty() {
            fail(&format!("{flag} is required"));
        }
    }
    a.mode = mode.unwrap_or_else(|| fail("--mode is required"));
    if a.period_ms == 0 {
        fail("--period-ms must be positive");
    }
    if a.start_ms.is_some_and(|s| s % a.period_ms != 0) {
        fail("--start-ms must be a multiple of --period-ms");
    }
    a
}

/// Milliseconds since the Unix epoch, by this process's wall clock.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// One run of the job: the row says who ran which tick, stamped by the server's
/// clock (`clock_timestamp()` default).
async fn body(
    table: &str,
    worker: &str,
    tick: i64,
    job: Duration,
) -> Result<(), pglock_runtime::Error> {
    let db = pglock_runtime::connection().await?;
    db.execute(
        &format!("INSERT INTO \"{table}\" (worker, tick) VALUES ($1, $2)"),
        &[&worker, &tick],
    )
    .await?;
    tokio::time::sleep(job).await;
    Ok(())
}

/// Mode `lock`: the job as the README recommends it for "once across the fleet".
/// `Ok(true)` when it ran, `Ok(false)` (the skipped value) when another instance
/// held the lock.
#[advisory_lock(key = key, timeout = 0, on_fail = skip)]
async fn job_lock(
    key: &str,
    table: &str,
    worker: &str,
    tick: i64,
    job: Duration,
) -> Result<bool, pglock_runtime::Error> {
    body(table, worker, tick, job).await?;
    Ok(true)
}

/// Mode `once_per`: at most one run per second of the database's clock.
#[advisory_lock(key = key, timeout = 0, on_fail = skip, once_per = "1s")]
async fn job_once_per(
    key: &str,
    table: &str,
    worker: &str,
    tick: i64,
    job: Duration,
) -> Result<bool, pglock_runtime::Error> {
    body(table, worker, tick, job).await?;
    Ok(true)
}

/// Mode `slot`: at most one run per planned tick, whatever the clocks say.
#[advisory_lock(key = key, timeout = 0, on_fail = skip, slot = planned)]
async fn job_slot(
    key: &str,
    table: &str,
    worker: &str,
    tick: i64,
    planned: SystemTime,
    job: Duration,
) -> Result<bool, pglock_runtime::Error> {
    body(table, worker, tick, job).await?;
    Ok(true)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = parse_args();
    let mut config: tokio_postgres::Config = a
        .url
        .parse()
        .unwrap_or_else(|e| fail(&format!("--url: {e}")));
    config.application_name(&a.name);
    pglock_runtime::register("default", Config::new(config).max_size(2)).unwrap();

    let start = a
        .start_ms
        .unwrap_or_else(|| (now_ms() / a.period_ms + 3) * a.period_ms);
    // Open the pool's connection (and check the table) before the first tick, so
    // that tick's run is not slower than the others by a connection set-up.
    let warm = async {
        let db = pglock_runtime::connection().await?;
        db.execute(&format!("SELECT 1 FROM \"{}\" LIMIT 0", a.table), &[])
            .await?;
        Ok::<_, pglock_runtime::Error>(())
    };
    if let Err(e) = warm.await {
        eprintln!("slot-worker {}: cannot reach the table: {e}", a.name);
        std::process::exit(1);
    }
    if now_ms() >= start + a.base_ms + a.offset_ms {
        eprintln!(
            "slot-worker {}: started after its first tick (start {start} ms): give a later --start-ms",
            a.name
        );
        std::process::exit(1);
    }

    let job = Duration::from_millis(a.job_ms);
    let (mut ran, mut skipped) = (0u64, 0u64);
    for k in 0..a.ticks {
        let slot = start + k * a.period_ms;
        let fire = slot + a.base_ms + a.offset_ms;
        // Sleep on the wall clock's difference: ticks follow the wall clock, as a
        // cron scheduler's do.
        tokio::time::sleep(Duration::from_millis(fire.saturating_sub(now_ms()))).await;
        let tick = (slot / a.period_ms) as i64;
        let outcome = match a.mode {
            Mode::Lock => job_lock(&a.key, &a.table, &a.name, tick, job).await,
            Mode::OncePer => job_once_per(&a.key, &a.table, &a.name, tick, job).await,
            Mode::Slot => {
                let planned = UNIX_EPOCH + Duration::from_millis(slot);
                job_slot(&a.key, &a.table, &a.name, tick, planned, job).await
            }
        };
        match outcome {
            Ok(true) => ran += 1,
            Ok(false) => skipped += 1,
            Err(e) => {
                eprintln!("slot-worker {}: tick {tick}: the job failed: {e}", a.name);
                std::process::exit(1);
            }
        }
    }
    println!("ok {ran} {skipped}");
}
