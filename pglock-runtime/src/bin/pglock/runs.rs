//! `pglock runs`: the record of scheduled runs, as a table or JSON, with the
//! slots that ran nowhere.

use std::time::{Duration, SystemTime};

use pglock_runtime::{MissedSlot, Run};
use serde_json::{json, Value};

use crate::args::RunsOpts;
use crate::render::{print_table, Column};

fn time(t: Option<SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_millis(t).to_string())
        .unwrap_or_default()
}

fn time_json(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time(Some(t))))
}

fn took(run: &Run) -> Option<Duration> {
    run.finished_at
        .and_then(|f| f.duration_since(run.started_at).ok())
}

/// Prints the runs (newest first), then the missed slots.
pub(crate) fn print_runs(runs: &[Run], missed: &[MissedSlot], opts: &RunsOpts, width: usize) {
    if opts.json {
        let runs: Vec<Value> = runs
            .iter()
            .map(|r| {
                json!({
                    "job": r.job,
                    "slot": r.slot,
                    "slot_start": time_json(r.slot_start),
                    "period_ms": r.period.map(|p| p.as_millis() as u64),
                    "attempt": r.attempt,
                    "retry": r.retry,
                    "application_name": r.application_name,
                    "host": r.host,
                    "client_pid": r.client_pid,
                    "backend_pid": r.backend_pid,
                    "started_at": time_json(Some(r.started_at)),
                    "finished_at": time_json(r.finished_at),
                    "duration_ms": took(r).map(|d| d.as_millis() as u64),
                    "outcome": r.outcome.as_str(),
                })
            })
            .collect();
        let missed: Vec<Value> = missed
            .iter()
            .map(|m| {
                json!({
                    "job": m.job,
                    "slot_start": time_json(Some(m.slot_start)),
                    "period_ms": m.period.as_millis() as u64,
                })
            })
            .collect();
        println!("{}", json!({ "runs": runs, "missed": missed }));
        return;
    }
    if runs.is_empty() {
        println!("No runs recorded.");
    } else {
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    r.slot.clone(),
                    r.outcome.to_string(),
                    took(r).map_or_else(String::new, |d| format!("{}ms", d.as_millis())),
                    r.attempt.to_string(),
                    r.host.clone(),
                    r.client_pid.map_or_else(String::new, |p| p.to_string()),
                    r.application_name.clone(),
                    time(Some(r.started_at)),
                    r.job.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                Column::new("SLOT"),
                Column::new("OUTCOME"),
                Column::new("TOOK"),
                Column::new("ATTEMPT"),
                Column::new("HOST"),
                Column::new("PID"),
                Column::new("APPLICATION"),
                Column::new("STARTED"),
                Column::new("JOB"),
            ],
            &rows,
            false,
            width,
        );
    }
    if !missed.is_empty() {
        println!("\nSlots that ran on no instance:");
        let rows: Vec<Vec<String>> = missed
            .iter()
            .map(|m| {
                vec![
                    time(Some(m.slot_start)),
                    humantime::format_duration(m.period).to_string(),
                    m.job.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                Column::new("SLOT"),
                Column::new("EVERY"),
                Column::new("JOB"),
            ],
            &rows,
            false,
            width,
        );
    }
}
