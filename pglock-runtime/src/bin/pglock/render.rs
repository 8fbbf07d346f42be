//! What the command prints: locks, blocking pairs and the blocking tree, as
//! tables and trees fitted to the terminal's width, as expanded records, or as
//! JSON.

use std::io::IsTerminal;
use std::time::Duration;

use pglock_runtime::{Backend, BlockingNode, BlockingPair, LockInfo, LockKey};
use serde_json::{json, Value};

use crate::args::Opts;
use crate::json::{backend_json, lock_json, node_json};

/// The width lines are fitted to when stdout is not a terminal and `COLUMNS` is
/// not set.
pub(crate) const DEFAULT_WIDTH: usize = 100;

/// The fewest characters of a query a table row gives it when they cannot all
/// fit; with less room left, the query goes on a line of its own under its row.
pub(crate) const QUERY_MIN: usize = 40;

/// The width lines are fitted to: `COLUMNS` when set (to a positive number), else
/// the terminal's when stdout is one, else [`DEFAULT_WIDTH`].
pub(crate) fn terminal_width() -> usize {
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w > 0)
    {
        return w;
    }
    if std::io::stdout().is_terminal() {
        if let Some((w, _)) = terminal_size::terminal_size() {
            return usize::from(w.0);
        }
    }
    DEFAULT_WIDTH
}

/// `s` on one line: runs of whitespace (newlines too) become one space.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to `max` characters, the last of them `…` when it was cut.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// What pglock shows as a session's query: `(pglock heartbeat)` when its last
/// statement was pglock's own heartbeat (what the application ran before is not
/// known), else the query on one line.
pub(crate) fn shown_query(b: &Backend) -> String {
    if b.is_pglock_heartbeat() {
        "(pglock heartbeat)".to_owned()
    } else {
        one_line(&b.query)
    }
}

/// A column of a table.
pub(crate) struct Column {
    name: &'static str,
    /// Left out first when the row does not fit (its content is said elsewhere).
    optional: bool,
}

impl Column {
    pub(crate) const fn new(name: &'static str) -> Column {
        Column {
            name,
            optional: false,
        }
    }

    /// A column left out first when the row does not fit the width.
    pub(crate) const fn optional(name: &'static str) -> Column {
        Column {
            name,
            optional: true,
        }
    }
}

/// The lines of a table whose last column is the query, fitted to `width`.
///
/// The query ends its row when that leaves it at least [`QUERY_MIN`] characters
/// (or all of it), cut to the width; otherwise it goes on a line of its own,
/// indented by four, under its row (and its header under the header line). A row that is wider than `width` even without
/// its query first loses its optional columns, then has its widest cells cut (to
/// no narrower than their header, ending in `…`); what still does not fit is cut.
pub(crate) fn table_lines(columns: &[Column], rows: &[Vec<String>], width: usize) -> Vec<String> {
    let n = columns.len();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| one_line(c)).collect())
        .collect();
    let len = |s: &str| s.chars().count();
    let mut shown: Vec<bool> = vec![true; n - 1];
    let natural: Vec<usize> = (0..n - 1)
        .map(|i| {
            rows.iter()
                .map(|r| len(&r[i]))
                .chain([len(columns[i].name)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut widths = natural.clone();
    // The row without its query: each shown column and two spaces after it.
    let fixed = |widths: &[usize], shown: &[bool]| -> usize {
        (0..n - 1)
            .filter(|&i| shown[i])
            .map(|i| widths[i] + 2)
            .sum()
    };
    let query = rows.iter().map(|r| len(&r[n - 1])).max().unwrap_or(0);
    let inline =
        fixed(&widths, &shown) + QUERY_MIN.min(query.max(len(columns[n - 1].name))) <= width;
    if !inline {
        while fixed(&widths, &shown) > width + 2 {
            if let Some(i) = (0..n - 1).find(|&i| shown[i] && columns[i].optional) {
                shown[i] = false;
                continue;
            }
            let widest = (0..n - 1)
                .filter(|&i| shown[i] && widths[i] > len(columns[i].name))
                .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)));
            match widest {
                Some(i) => widths[i] -= 1,
                None => break,
            }
        }
    }
    let row_line = |cells: &[String]| -> String {
        let mut out = String::new();
        for i in (0..n - 1).filter(|&i| shown[i]) {
            let c = cut(&cells[i], widths[i]);
            out.push_str(&format!("{c:<w$}  ", w = widths[i]));
        }
        if inline {
            out.push_str(&cells[n - 1]);
        }
        cut(out.trim_end(), width)
    };
    let mut lines = vec![row_line(
        &columns
            .iter()
            .map(|c| c.name.to_owned())
            .collect::<Vec<_>>(),
    )];
    if !inline {
        lines.push(cut(&format!("    {}", columns[n - 1].name), width));
    }
    for row in &rows {
        lines.push(row_line(row));
        if !inline && !row[n - 1].is_empty() {
            lines.push(cut(&format!("    {}", row[n - 1]), width));
        }
    }
    lines
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

/// Prints rows as a table fitted to `width` (see [`table_lines`]), or as expanded
/// records (values in full, each on one line).
pub(crate) fn print_table(columns: &[Column], rows: &[Vec<String>], expanded: bool, width: usize) {
    if expanded {
        let w = columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for (i, row) in rows.iter().enumerate() {
            println!("-[ RECORD {} ]-", i + 1);
            for (c, v) in columns.iter().zip(row) {
                println!("{:<w$} | {}", c.name, one_line(v));
            }
        }
        return;
    }
    for line in table_lines(columns, rows, width) {
        println!("{line}");
    }
}

pub(crate) fn print_locks(locks: &[LockInfo], opts: &Opts, width: usize) {
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
                shown_query(&l.backend),
            ]
        })
        .collect();
    print_table(
        &[
            Column::new("PID"),
            Column::optional("TYPE"),
            Column::new("MODE"),
            Column::new("STATUS"),
            Column::new("FOR"),
            Column::new("TARGET"),
            Column::new("APPLICATION"),
            Column::new("STATE"),
            Column::new("QUERY"),
        ],
        &rows,
        opts.expanded,
        width,
    );
}

/// What an empty `blocking` or `tree` prints (not with `--json`).
pub(crate) const NO_BLOCKED_SESSIONS: &str = "No blocked sessions.";

pub(crate) fn print_pairs(pairs: &[BlockingPair], opts: &Opts, width: usize) {
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
    if pairs.is_empty() {
        println!("{NO_BLOCKED_SESSIONS}");
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
                shown_query(&p.blocking),
            ]
        })
        .collect();
    print_table(
        &[
            Column::new("BLOCKED"),
            Column::new("WANTS"),
            Column::new("ON"),
            Column::new("WAITING"),
            Column::new("BLOCKING"),
            Column::new("APPLICATION"),
            Column::new("STATE"),
            Column::new("FOR"),
            Column::new("BLOCKING QUERY"),
        ],
        &rows,
        opts.expanded,
        width,
    );
}

/// `pid [application] state`, and for a waiting session what it waits for.
pub(crate) fn session_head(b: &Backend, waiting_for: Option<&LockInfo>) -> String {
    let wants = waiting_for
        .map(|l| {
            format!(
                " waits {} for {} on {}",
                fmt_duration(l.wait_duration()),
                l.mode,
                target(l)
            )
        })
        .unwrap_or_default();
    format!(
        "{} [{}] {}{}",
        b.pid,
        if b.application_name.is_empty() {
            "-"
        } else {
            &b.application_name
        },
        b.state.as_deref().unwrap_or_default(),
        wants,
    )
}

/// `head: query` on one line when the whole query fits, else `head` and the
/// query on a line of its own, indented four more; each line cut to `width`.
pub(crate) fn head_and_query(indent: usize, head: &str, query: &str, width: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let one = format!("{pad}{head}: {query}");
    let room = width.saturating_sub(indent + head.chars().count() + 2);
    if query.is_empty() {
        return vec![cut(&format!("{pad}{head}"), width)];
    }
    if room >= query.chars().count() {
        return vec![cut(&one, width)];
    }
    vec![
        cut(&format!("{pad}{head}"), width),
        cut(&format!("{pad}    {query}"), width),
    ]
}

/// The lines of the blocking tree: a node's children indented two under it.
pub(crate) fn tree_lines(tree: &[BlockingNode], width: usize) -> Vec<String> {
    fn walk(n: &BlockingNode, depth: usize, width: usize, out: &mut Vec<String>) {
        let head = session_head(&n.backend, n.waiting_for.as_ref());
        out.extend(head_and_query(
            2 * depth,
            &head,
            &shown_query(&n.backend),
            width,
        ));
        for c in &n.blocked {
            walk(c, depth + 1, width, out);
        }
    }
    let mut out = Vec::new();
    for root in tree {
        walk(root, 0, width, &mut out);
    }
    out
}

pub(crate) fn print_tree(tree: &[BlockingNode], opts: &Opts, width: usize) {
    if opts.json {
        println!("{}", Value::Array(tree.iter().map(node_json).collect()));
        return;
    }
    if tree.is_empty() {
        println!("{NO_BLOCKED_SESSIONS}");
        return;
    }
    for line in tree_lines(tree, width) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    const COLUMNS: [Column; 4] = [
        Column::new("PID"),
        Column::optional("TYPE"),
        Column::new("STATE"),
        Column::new("QUERY"),
    ];

    #[test]
    fn a_query_that_fits_ends_its_row() {
        let rows = [row(&["42", "relation", "idle", "SELECT\n  1"])];
        assert_eq!(
            table_lines(&COLUMNS, &rows, 100),
            [
                "PID  TYPE      STATE  QUERY",
                "42   relation  idle   SELECT 1"
            ]
        );
    }

    #[test]
    fn a_query_with_too_little_room_goes_under_its_row() {
        let q = "SELECT a, b, c FROM a_table_with_a_long_name WHERE x = 1";
        let rows = [row(&["42", "relation", "idle in transaction", q])];
        let lines = table_lines(&COLUMNS, &rows, 60);
        assert_eq!(
            lines,
            [
                "PID  TYPE      STATE",
                "    QUERY",
                "42   relation  idle in transaction",
                &format!("    {q}"),
            ]
        );
        // With room for `QUERY_MIN` characters, the query ends its row, cut.
        let wide = table_lines(&COLUMNS, &rows, 41 + QUERY_MIN);
        assert_eq!(wide[1].chars().count(), 41 + QUERY_MIN);
        assert!(wide[1].ends_with('…') && wide[1].contains("SELECT a, b"));
    }

    #[test]
    fn a_row_too_wide_loses_optional_columns_then_is_cut() {
        let rows = [row(&[
            "42",
            "transactionid",
            "idle in transaction",
            "SELECT 1",
        ])];
        assert_eq!(
            table_lines(&COLUMNS, &rows, 26),
            [
                "PID  STATE",
                "    QUERY",
                "42   idle in transaction",
                "    SELECT 1"
            ]
        );
        let narrow = table_lines(&COLUMNS, &rows, 12);
        assert_eq!(narrow[2], "42   idle i…");
        assert!(narrow.iter().all(|l| l.chars().count() <= 12), "{narrow:?}");
    }

    #[test]
    fn tree_lines_keep_the_query_whole_when_they_can() {
        assert_eq!(
            head_and_query(2, "7 [app] active", "SELECT 1", 40),
            ["  7 [app] active: SELECT 1"]
        );
        assert_eq!(
            head_and_query(2, "7 [app] active", "SELECT 1, 2, 3, 4, 5", 30),
            ["  7 [app] active", "      SELECT 1, 2, 3, 4, 5"]
        );
        assert_eq!(head_and_query(0, "7 [app] idle", "", 10), ["7 [app] i…"]);
    }

    #[test]
    fn cut_marks_what_it_cut() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abcdef", 0), "");
    }
}
