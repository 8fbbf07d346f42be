//! What the command prints: locks, blocking pairs and the blocking tree, as
//! tables cut to the terminal's width, as expanded records, or as JSON.

use std::io::IsTerminal;
use std::time::Duration;

use pglock_runtime::{BlockingNode, BlockingPair, LockInfo, LockKey};
use serde_json::{json, Value};

use crate::args::Opts;
use crate::json::{backend_json, lock_json, node_json};

/// The terminal's width when stdout is one (tables are cut to it), else `None`.
pub(crate) fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
}

/// `850ms` below a second, whole seconds (`2m 5s`) above.
fn fmt_duration(d: Option<Duration>) -> String {
    match d {
        None => String::new(),
        Some(d) if d < Duration::from_secs(1) => format!("{}ms", d.as_millis()),
        Some(d) => humantime::format_duration(Duration::from_secs(d.as_secs())).to_string(),
    }
}

/// What a lock is on: the relation, the advisory key, or the transaction.
fn target(l: &LockInfo) -> String {
    if let Some(r) = &l.relation {
        return r.clone();
    }
    let key = match l.key {
        Some(LockKey::Int(k)) => format!("key {k}"),
        Some(LockKey::Pair(a, b)) => format!("key ({a}, {b})"),
        None => return l.transaction.clone().unwrap_or_default(),
    };
    if let Some(name) = &l.name {
        return format!("{name} ({key})");
    }
    key
}

/// Prints rows as a table whose last column (the query) is cut to the terminal
/// width, or as expanded records.
pub(crate) fn print_table(
    headers: &[&str],
    rows: &[Vec<String>],
    expanded: bool,
    width: Option<usize>,
) {
    if expanded {
        let w = headers.iter().map(|h| h.len()).max().unwrap_or(0);
        for (i, row) in rows.iter().enumerate() {
            println!("-[ RECORD {} ]-", i + 1);
            for (h, v) in headers.iter().zip(row) {
                println!("{h:<w$} | {v}");
            }
        }
        return;
    }
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, v) in row.iter().enumerate().take(n - 1) {
            widths[i] = widths[i].max(v.chars().count());
        }
    }
    let fixed: usize = widths[..n - 1].iter().map(|w| w + 2).sum();
    let last = width.map(|w| w.saturating_sub(fixed).max(10));
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < n {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                let c = c.split_whitespace().collect::<Vec<_>>().join(" ");
                match last {
                    Some(max) if c.chars().count() > max => {
                        out.extend(c.chars().take(max.saturating_sub(1)));
                        out.push('…');
                    }
                    _ => out.push_str(&c),
                }
            }
        }
        println!("{}", out.trim_end());
    };
    line(&headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
    for row in rows {
        line(row);
    }
}

pub(crate) fn print_locks(locks: &[LockInfo], opts: &Opts, width: Option<usize>) {
    if opts.json {
        println!("{}", Value::Array(locks.iter().map(lock_json).collect()));
        return;
    }
    let rows: Vec<Vec<String>> = locks
        .iter()
        .map(|l| {
            vec![
                l.pid().to_string(),
                l.locktype.clone(),
                l.mode.clone(),
                if l.granted {
                    "held".into()
                } else {
                    "waiting".into()
                },
                fmt_duration(l.duration()),
                target(l),
                l.backend.application_name.clone(),
                l.backend.state.clone().unwrap_or_default(),
                l.backend.query.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "PID",
            "TYPE",
            "MODE",
            "STATUS",
            "FOR",
            "TARGET",
            "APPLICATION",
            "STATE",
            "QUERY",
        ],
        &rows,
        opts.expanded,
        width,
    );
}

pub(crate) fn print_pairs(pairs: &[BlockingPair], opts: &Opts, width: Option<usize>) {
    if opts.json {
        let v: Vec<Value> = pairs
            .iter()
            .map(|p| {
                json!({
                    "blocked": backend_json(&p.blocked),
                    "waiting_for": p.waiting_for.as_ref().map(lock_json),
                    "blocking": backend_json(&p.blocking),
                })
            })
            .collect();
        println!("{}", Value::Array(v));
        return;
    }
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            let w = p.waiting_for.as_ref();
            vec![
                p.blocked.pid.to_string(),
                w.map(|l| l.mode.clone()).unwrap_or_default(),
                w.map(target).unwrap_or_default(),
                fmt_duration(w.and_then(LockInfo::wait_duration)),
                p.blocking.pid.to_string(),
                p.blocking.application_name.clone(),
                p.blocking.state.clone().unwrap_or_default(),
                fmt_duration(p.blocking.held_for()),
                p.blocking.query.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "BLOCKED",
            "WANTS",
            "ON",
            "WAITING",
            "BLOCKING",
            "APPLICATION",
            "STATE",
            "FOR",
            "BLOCKING QUERY",
        ],
        &rows,
        opts.expanded,
        width,
    );
}

pub(crate) fn print_tree(tree: &[BlockingNode], opts: &Opts, width: Option<usize>) {
    if opts.json {
        println!("{}", Value::Array(tree.iter().map(node_json).collect()));
        return;
    }
    fn walk(n: &BlockingNode, depth: usize, width: Option<usize>) {
        let b = &n.backend;
        let wants = n
            .waiting_for
            .as_ref()
            .map(|l| {
                format!(
                    " waits {} for {} on {}",
                    fmt_duration(l.wait_duration()),
                    l.mode,
                    target(l)
                )
            })
            .unwrap_or_default();
        let mut line = format!(
            "{}{} [{}] {}{}: {}",
            "  ".repeat(depth),
            b.pid,
            if b.application_name.is_empty() {
                "-"
            } else {
                &b.application_name
            },
            b.state.clone().unwrap_or_default(),
            wants,
            b.query.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        if let Some(w) = width {
            if line.chars().count() > w {
                line = line.chars().take(w.saturating_sub(1)).collect::<String>() + "…";
            }
        }
        println!("{line}");
        for c in &n.blocked {
            walk(c, depth + 1, width);
        }
    }
    for root in tree {
        walk(root, 0, width);
    }
}
