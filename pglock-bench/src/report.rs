//! The report of one run: measured rows, round trips on the wire, and the
//! targets checked against them; printed as tables or as JSON.

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

/// A target from issue 6, 12 or 17, checked against this run's rows.
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
    pub(crate) fn value(&self, name: &str) -> f64 {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .map_or(f64::NAN, |r| r.value)
    }

    pub(crate) fn push(
        &mut self,
        name: &'static str,
        value: f64,
        p90: Option<f64>,
        unit: &'static str,
    ) {
        self.rows.push(Row {
            name,
            value,
            p90,
            unit,
        });
    }
}

/// How a verdict's measured value is compared with its limit.
#[derive(Debug, Clone, Copy)]
enum Cmp {
    AtMost,
    AtLeast,
    Equal,
}

/// Latency ratios of the scheduled-slot operations (issue 12), against the
/// baselines measured in the same interleaved run: `(row, numerator,
/// denominator)`.
const SLOT_RATIOS: [(&str, &str, &str); 8] = [
    (
        "once_per run / pool SELECT 1",
        "once_per, run (slot free)",
        "pool SELECT 1",
    ),
    (
        "once_per run / annotated async fn",
        "once_per, run (slot free)",
        "annotated async fn",
    ),
    (
        "already-ran skip / pool SELECT 1",
        "once_per, already ran (skip)",
        "pool SELECT 1",
    ),
    (
        "already-ran skip / annotated async fn",
        "once_per, already ran (skip)",
        "annotated async fn",
    ),
    (
        "once_per busy skip / busy skip",
        "once_per, busy (skip)",
        "timeout = 0, busy (skip)",
    ),
    (
        "slot = <expr> run / annotated async fn",
        "slot = <expr>, run",
        "annotated async fn",
    ),
    (
        "xact + slot run / annotated xact",
        "xact + slot, run",
        "annotated xact",
    ),
    (
        "no_wait().slot(..).run / run(async {})",
        "no_wait().slot(..).run(async {})",
        "pglock run(async {})",
    ),
];

/// Adds the scheduled-slot latency ratios (after the latency rows).
pub(crate) fn slot_ratios(r: &mut Report) {
    for (name, a, b) in SLOT_RATIOS {
        let v = r.value(a) / r.value(b);
        r.push(name, v, None, "×");
    }
}

/// Round-trip targets of issue 12 (scheduled slots): `(verdict, operation,
/// baseline, extra round trips allowed, comparison)`, round trips as
/// [`round_trips`] counts them.
const SLOT_ROUND_TRIPS: [(&str, &str, &str, f64, Cmp); 6] = [
    (
        "once_per busy skip: over busy skip",
        "once_per, busy (skip)",
        "timeout = 0, busy (skip)",
        0.0,
        Cmp::Equal,
    ),
    (
        "already-ran skip: over annotated call",
        "once_per, already ran (skip)",
        "annotated async fn",
        0.0,
        Cmp::AtMost,
    ),
    (
        "once_per run: over annotated call",
        "once_per, run (slot free)",
        "annotated async fn",
        1.0,
        Cmp::AtMost,
    ),
    (
        "slot = <expr> run: over annotated call",
        "slot = <expr>, run",
        "annotated async fn",
        1.0,
        Cmp::AtMost,
    ),
    (
        "xact + slot run: over annotated xact",
        "xact + slot, run",
        "annotated xact",
        1.0,
        Cmp::AtMost,
    ),
    (
        "no_wait().slot(..).run: over run()",
        "no_wait().slot(..).run(async {})",
        "pglock run(async {})",
        1.0,
        Cmp::AtMost,
    ),
];

/// The names of the round-trip verdicts of issue 12 (see [`Report::verdicts`]).
pub fn slot_verdict_names() -> impl Iterator<Item = &'static str> {
    SLOT_ROUND_TRIPS.iter().map(|v| v.0)
}

/// Round trips the caller of an operation waits for, in whole round trips: the
/// smaller of its critical path (which CPU load on the client can only inflate)
/// and its turns (which a pipelined statement sent after a reply, not waited
/// for, can only inflate), rounded (the fraction is the delay line's timer
/// granularity, or that load).
fn round_trips(r: &Report, name: &str) -> f64 {
    r.wire
        .iter()
        .find(|w| w.name == name)
        .map_or(f64::NAN, |w| w.critical_path.min(w.turns).round())
}

/// Checks the targets of issues 6 and 12 against the measured rows.
pub(crate) fn verdicts(r: &mut Report) {
    let ratio = |a: &str, b: &str| r.value(a) / r.value(b);
    let mut v = vec![
        (
            "annotated call / pool SELECT 1",
            ratio("annotated async fn", "pool SELECT 1"),
            "≤ 1.2",
            1.2,
            Cmp::AtMost,
        ),
        (
            "busy timeout = 0 / pool SELECT 1",
            ratio("timeout = 0, busy (skip)", "pool SELECT 1"),
            "≤ 1.1",
            1.1,
            Cmp::AtMost,
        ),
        (
            "8-task distinct-key throughput / raw",
            ratio(
                "pglock 8 tasks, distinct keys",
                "raw 8 tasks, distinct keys",
            ),
            "≥ 0.9",
            0.9,
            Cmp::AtLeast,
        ),
        (
            "hand-off / raw ping-pong",
            ratio("pglock hand-off", "raw hand-off"),
            "≤ 1.2",
            1.2,
            Cmp::AtMost,
        ),
        (
            "server connections, 100 waiters",
            r.value("100 pglock waiters: server connections"),
            "≤ 2",
            2.0,
            Cmp::AtMost,
        ),
    ];
    for (name, op, base, allowed, cmp) in SLOT_ROUND_TRIPS {
        let target = match cmp {
            Cmp::Equal => "= +0",
            _ if allowed < 0.5 => "≤ +0",
            _ => "≤ +1",
        };
        v.push((
            name,
            round_trips(r, op) - round_trips(r, base),
            target,
            allowed,
            cmp,
        ));
    }
    r.verdicts = v
        .into_iter()
        .map(|(name, measured, target, limit, cmp)| Verdict {
            name,
            measured,
            target,
            pass: match cmp {
                Cmp::AtMost => measured <= limit,
                Cmp::AtLeast => measured >= limit,
                Cmp::Equal => measured == limit,
            },
        })
        .collect();
}

/// Prints the report as tables.
pub fn print(r: &Report) {
    println!("{:<44} {:>14} {:>12}", "measurement", "median/value", "p90");
    for row in &r.rows {
        let p90 = row
            .p90
            .map_or(String::new(), |p| format!("{p:.1} {}", row.unit));
        let digits = if row.unit == "×" { 2 } else { 1 };
        println!(
            "{:<44} {:>9.digits$} {:<5} {:>12}",
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
        "target (issues 6, 12, 17)", "measured", "target", ""
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
