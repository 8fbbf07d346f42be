//! Issue 17.2: the statements on pglock's return and periodic paths with 0 and
//! with 10,000 advisory locks held by another session, next to a raw `SELECT 1`
//! in the same phase. A `pg_locks` read copies the server's whole lock table,
//! so a check built on it grows with every lock on the server; the rows show
//! the checks of e529ad3 (which read it) and today's, sampled interleaved.

use std::time::{Duration, Instant};

use pglock_runtime::__private::statements::{HEARTBEAT, RETURN_CHECK};
use pglock_runtime::{advisory, connection_for};
use pglock_testkit::observe::{foreign_advisory_locks, session};
use tokio_postgres::types::Type;

use crate::ops::settle;
use crate::report::{Report, Verdict};
use crate::sample::{median_p90, BoxFut, Op};
use crate::KEY;

/// Locks the other session holds in the loaded phase.
pub(crate) const FOREIGN: i64 = 10_000;

/// The return check of e529ad3 (before issue 17.2): a count of the session's
/// advisory locks in `pg_locks`, and the reset (SQL-level prepared statements
/// deallocated by a `DO` block every time).
const RETURN_CHECK_E529AD3: &str = "SELECT now() = statement_timestamp(), \
     (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), \
     current_setting('lock_timeout'); \
     RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; UNLISTEN *; CLOSE ALL; \
     DISCARD TEMP; DISCARD SEQUENCES; \
     DO $pglock$ DECLARE s record; BEGIN \
       FOR s IN SELECT name FROM pg_prepared_statements WHERE from_sql LOOP \
         EXECUTE format('DEALLOCATE %I', s.name); \
       END LOOP; \
     END $pglock$; \
     SELECT current_user = session_user";

/// The heartbeat of e529ad3: whether this session holds the lock, in `pg_locks`.
const HEARTBEAT_E529AD3: &str = "/* pglock heartbeat */ SELECT EXISTS (SELECT 1 FROM pg_locks \
     WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND classid = $1 AND objid = $2 AND objsubid = $3 AND mode = $4)";

/// Today's checks and their baseline, by row name (without the phase).
const NOW: [&str; 5] = [
    "raw SELECT 1",
    "return check (reset)",
    "heartbeat",
    "unlock (the pipelined release's check)",
    "used connection back in the pool (API)",
];

/// The checks of e529ad3 and their own baseline, sampled apart from [`NOW`]:
/// a `pg_locks` read of 10,000 locks copies megabytes, which would slow
/// whatever runs after it in the same iteration.
const BEFORE: [&str; 3] = [
    "raw SELECT 1, e529ad3 group",
    "return check, e529ad3 (pg_locks count + reset)",
    "heartbeat, e529ad3 (pg_locks read)",
];

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Row names: an op in the phase with `foreign` locks held elsewhere.
pub(crate) fn row_name(op: &str, foreign: i64) -> String {
    format!("{op} [{foreign} foreign locks]")
}

/// The ratio rows of an op: over its group's raw `SELECT 1` in each phase, and
/// the loaded ratio over the unloaded one (how much the op grew with the
/// server's lock table, against a baseline that did not).
fn ratio_names(op: &str) -> [String; 3] {
    [
        format!("{op} / raw SELECT 1 [0]"),
        format!("{op} / raw SELECT 1 [{FOREIGN}]"),
        format!("{op}: {FOREIGN} / 0 foreign locks"),
    ]
}

/// Pushes one group's rows: medians per phase, then the ratios of every op
/// after the first (the baseline).
fn push_group(r: &mut Report, names: &[&'static str], samples: [Vec<Vec<Duration>>; 2]) {
    let mut medians = [Vec::new(), Vec::new()];
    for (phase, (foreign, phase_samples)) in [0, FOREIGN].into_iter().zip(samples).enumerate() {
        for (op, v) in names.iter().zip(phase_samples) {
            let (median, p90) = median_p90(v);
            r.push(leak(row_name(op, foreign)), median, Some(p90), "µs");
            medians[phase].push(median);
        }
    }
    for (i, op) in names.iter().enumerate().skip(1) {
        let (unloaded, loaded) = (medians[0][i] / medians[0][0], medians[1][i] / medians[1][0]);
        for (name, value) in ratio_names(op)
            .into_iter()
            .zip([unloaded, loaded, loaded / unloaded])
        {
            r.push(leak(name), value, None, "×");
        }
    }
}

/// A boxed op.
fn op<'a, F>(f: F) -> Op<'a>
where
    F: FnMut() -> BoxFut<'a, Option<Duration>> + Send + 'a,
{
    Box::new(f)
}

/// Measures both phases (`n` samples per row) on the alias `alias` (one
/// connection, registered by the caller) and a raw client, and pushes the rows.
pub(crate) async fn scans(url: &str, alias: &'static str, n: usize, r: &mut Report) {
    let raw = session(url, "bench-scans").await;
    let select1 = raw.prepare("SELECT 1").await.unwrap();
    let lock = raw.prepare("SELECT pg_advisory_lock($1)").await.unwrap();
    let unlock = raw.prepare("SELECT pg_advisory_unlock($1)").await.unwrap();
    let heartbeat = raw.prepare(HEARTBEAT).await.unwrap();
    let old_heartbeat = raw
        .prepare_typed(
            HEARTBEAT_E529AD3,
            &[Type::OID, Type::OID, Type::INT2, Type::TEXT],
        )
        .await
        .unwrap();
    let key = KEY + 0x3000_0000;
    let (classid, objid) = ((key >> 32) as u32, key as u32);
    // The pglock connection has been used once (its statements prepared).
    advisory(key + 1).using(alias).run(async {}).await.unwrap();
    settle(alias).await;
    let (raw, select1, lock, unlock, heartbeat, old_heartbeat) =
        (&raw, &select1, &lock, &unlock, &heartbeat, &old_heartbeat);
    let select1_op = move || -> BoxFut<'_, Option<Duration>> {
        Box::pin(async move {
            raw.query_one(select1, &[]).await.unwrap();
            None
        })
    };
    let mut now: Vec<(&'static str, Op<'_>)> = vec![
        (NOW[0], op(select1_op)),
        (
            NOW[1],
            op(move || {
                Box::pin(async move {
                    raw.simple_query(RETURN_CHECK).await.unwrap();
                    None
                })
            }),
        ),
        (
            NOW[2],
            op(move || {
                Box::pin(async move {
                    raw.query_one(heartbeat, &[]).await.unwrap();
                    None
                })
            }),
        ),
        (
            NOW[3],
            op(move || {
                Box::pin(async move {
                    raw.query_one(lock, &[&key]).await.unwrap();
                    let t = Instant::now();
                    let held: bool = raw.query_one(unlock, &[&key]).await.unwrap().get(0);
                    let d = t.elapsed();
                    assert!(held);
                    Some(d)
                })
            }),
        ),
        (
            NOW[4],
            op(move || {
                Box::pin(async move {
                    let c = connection_for(alias).await.unwrap();
                    let t = Instant::now();
                    drop(c);
                    settle(alias).await;
                    Some(t.elapsed())
                })
            }),
        ),
    ];
    let samples = sample_in_blocks(url, n, &mut now).await;
    push_group(r, &NOW, samples);
    let mut before: Vec<(&'static str, Op<'_>)> = vec![
        (BEFORE[0], op(select1_op)),
        (
            BEFORE[1],
            op(move || {
                Box::pin(async move {
                    raw.simple_query(RETURN_CHECK_E529AD3).await.unwrap();
                    None
                })
            }),
        ),
        (
            BEFORE[2],
            op(move || {
                Box::pin(async move {
                    let mode = "ExclusiveLock";
                    raw.query_one(old_heartbeat, &[&classid, &objid, &1i16, &mode])
                        .await
                        .unwrap();
                    None
                })
            }),
        ),
    ];
    let samples = sample_in_blocks(url, n, &mut before).await;
    push_group(r, &BEFORE, samples);
}

/// Issue 17's targets for these rows: `(verdict, row, limit)`, each "at most".
const TARGETS: [(&str, &str, f64); 5] = [
    (
        "heartbeat / raw SELECT 1, 10,000 foreign locks",
        "heartbeat / raw SELECT 1 [10000]",
        1.2,
    ),
    (
        "return check / raw SELECT 1, 10,000 foreign locks",
        "return check (reset) / raw SELECT 1 [10000]",
        1.2,
    ),
    (
        "heartbeat: 10,000 / 0 foreign locks",
        "heartbeat: 10000 / 0 foreign locks",
        1.2,
    ),
    (
        "return check: 10,000 / 0 foreign locks",
        "return check (reset): 10000 / 0 foreign locks",
        1.2,
    ),
    (
        "pipelined release's unlock: 10,000 / 0 foreign locks",
        "unlock (the pipelined release's check): 10000 / 0 foreign locks",
        1.2,
    ),
];

/// Appends the verdicts of [`TARGETS`].
pub(crate) fn verdicts(r: &mut Report) {
    for (name, row, limit) in TARGETS {
        let measured = r.value(row);
        r.verdicts.push(Verdict {
            name,
            measured,
            target: "≤ 1.2",
            pass: measured <= limit,
        });
    }
}

/// Blocks per phase: the phases alternate, so that both see the machine's fast
/// and slow moments alike (loopback round trips on these VMs change mode for
/// seconds at a time).
const BLOCKS: usize = 5;

/// Samples every op `n` times with 0 and with [`FOREIGN`] locks held by
/// another session: phases alternate in blocks, each iteration runs every op
/// once in a fresh pseudo-random order (deferred work, such as a return check,
/// must not always land on the same next op). Returns `[phase][op]` samples.
async fn sample_in_blocks(
    url: &str,
    n: usize,
    ops: &mut [(&'static str, Op<'_>)],
) -> [Vec<Vec<Duration>>; 2] {
    let mut out: [Vec<Vec<Duration>>; 2] = [
        ops.iter().map(|_| Vec::with_capacity(n)).collect(),
        ops.iter().map(|_| Vec::with_capacity(n)).collect(),
    ];
    let per_block = n.div_ceil(BLOCKS).max(1);
    let warm = (per_block / 10).max(3);
    let mut order: Vec<usize> = (0..ops.len()).collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for block in 0..2 * BLOCKS {
        let phase = block % 2;
        let holder = match phase {
            0 => None,
            _ => {
                Some(foreign_advisory_locks(url, "bench-foreign", KEY + 0x4000_0000, FOREIGN).await)
            }
        };
        for i in 0..warm + per_block {
            shuffle(&mut order, &mut seed);
            for &j in &order {
                let t = Instant::now();
                let d = (ops[j].1)().await.unwrap_or_else(|| t.elapsed());
                if i >= warm {
                    out[phase][j].push(d);
                }
            }
        }
        if let Some(h) = holder {
            h.batch_execute("SELECT pg_advisory_unlock_all()")
                .await
                .unwrap();
        }
    }
    out
}

/// Fisher–Yates with xorshift64: no dependency for a benchmark's order.
fn shuffle(v: &mut [usize], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        v.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}
