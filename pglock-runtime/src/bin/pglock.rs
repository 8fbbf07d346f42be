//! `pglock`: list PostgreSQL locks and who blocks whom; cancel or terminate
//! blockers.
//!
//! ```text
//! pglock                       # every lock, waiting first, then longest-held
//! pglock blocking --waiting    # blocked → blocking pairs
//! pglock tree                  # the blocking tree
//! pglock 4242 4243 --terminate # terminate these backends (asks first)
//! pglock blocking --json       # machine-readable
//! ```
//!
//! Exit status: 0 on success; 1 when there was nothing to cancel or terminate
//! ("No queries to terminate.") or the prompt was declined ("Aborting!"); 2 on
//! usage errors and database errors.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use pglock_runtime::{
    inspect, Backend, BlockingNode, BlockingPair, Config, KeyHash, LockFilter, LockInfo, LockKey,
};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(name = "pglock", version, about = "PostgreSQL locks and who blocks whom", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every lock of the database, waiting first, then longest-held (the default).
    Locks(Opts),
    /// Blocked → blocking pairs.
    Blocking(Opts),
    /// The blocking tree: each blocker with the sessions waiting for it.
    Tree(Opts),
}

#[derive(clap::Args, Debug, Clone, Default)]
struct Opts {
    /// Only these backend pids (for `blocking` and `tree`: either side of a pair).
    pids: Vec<i32>,
    /// Only granted (held) locks.
    #[arg(long, conflicts_with = "waiting")]
    granted: bool,
    /// Only locks being waited for.
    #[arg(long)]
    waiting: bool,
    /// Only locks on this relation (`table`, `schema.table`, `"Odd Name"`).
    #[arg(long)]
    relation: Option<String>,
    /// Only this advisory key: an integer, `a,b` for a two-int key, or a string
    /// hashed with `--hash`.
    #[arg(long)]
    key: Option<String>,
    /// How `--key` strings are hashed: django_pglock, django_pglocks,
    /// django_pglocks_v1, postgres_lock, sqlx.
    #[arg(long, default_value = "django_pglock")]
    hash: String,
    /// Only locks waited for or held at least this long (`500ms`, `5s`, `2m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    min_duration: Option<Duration>,
    /// Only sessions with this application_name.
    #[arg(long)]
    application_name: Option<String>,
    /// At most this many rows.
    #[arg(long, short = 'l')]
    limit: Option<usize>,
    /// One attribute per line.
    #[arg(long, short = 'e')]
    expanded: bool,
    /// JSON output (fields documented in the README).
    #[arg(long, conflicts_with = "expanded")]
    json: bool,
    /// Cancel the statements of the selected sessions (for `blocking`/`tree`: of
    /// the blockers).
    #[arg(long, conflicts_with = "terminate")]
    cancel: bool,
    /// Terminate the selected sessions (for `blocking`/`tree`: the blockers).
    #[arg(long)]
    terminate: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Database to inspect; defaults to $DATABASE_URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl Opts {
    /// Options given after a subcommand win over those given before it.
    fn merge(self, sub: Opts) -> Opts {
        Opts {
            pids: if sub.pids.is_empty() {
                self.pids
            } else {
                sub.pids
            },
            granted: self.granted || sub.granted,
            waiting: self.waiting || sub.waiting,
            relation: sub.relation.or(self.relation),
            key: sub.key.or(self.key),
            hash: if sub.hash != "django_pglock" {
                sub.hash
            } else {
                self.hash
            },
            min_duration: sub.min_duration.or(self.min_duration),
            application_name: sub.application_name.or(self.application_name),
            limit: sub.limit.or(self.limit),
            expanded: self.expanded || sub.expanded,
            json: self.json || sub.json,
            cancel: self.cancel || sub.cancel,
            terminate: self.terminate || sub.terminate,
            yes: self.yes || sub.yes,
            database_url: sub.database_url.or(self.database_url),
        }
    }

    fn filter(&self) -> Result<LockFilter, String> {
        let mut f = LockFilter::new();
        if !self.pids.is_empty() {
            f = f.pids(self.pids.iter().copied());
        }
        if self.granted {
            f = f.granted(true);
        }
        if self.waiting {
            f = f.granted(false);
        }
        if let Some(r) = &self.relation {
            f = f.relation(r.clone());
        }
        if let Some(k) = &self.key {
            f = f.key(parse_key(k, &self.hash)?);
        }
        if let Some(d) = self.min_duration {
            f = f.min_duration(d);
        }
        if let Some(a) = &self.application_name {
            f = f.application_name(a.clone());
        }
        if let Some(n) = self.limit {
            f = f.limit(n);
        }
        Ok(f)
    }
}

fn parse_key(s: &str, hash: &str) -> Result<LockKey, String> {
    if let Ok(k) = s.parse::<i64>() {
        return Ok(LockKey::Int(k));
    }
    if let Some((a, b)) = s.split_once(',') {
        if let (Ok(a), Ok(b)) = (a.trim().parse::<i32>(), b.trim().parse::<i32>()) {
            return Ok(LockKey::Pair(a, b));
        }
    }
    let hash = match hash {
        "django_pglock" => KeyHash::DjangoPglock,
        "django_pglocks" => KeyHash::DjangoPglocks,
        "django_pglocks_v1" => KeyHash::DjangoPglocksV1,
        "postgres_lock" => KeyHash::PostgresLock,
        "sqlx" => KeyHash::Sqlx,
        other => {
            return Err(format!(
                "unknown --hash `{other}`: expected django_pglock, django_pglocks, \
                 django_pglocks_v1, postgres_lock or sqlx"
            ))
        }
    };
    Ok(LockKey::hashed(s, hash))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (kind, opts) = match cli.command {
        None => ("locks", cli.opts),
        Some(Command::Locks(o)) => ("locks", cli.opts.merge(o)),
        Some(Command::Blocking(o)) => ("blocking", cli.opts.merge(o)),
        Some(Command::Tree(o)) => ("tree", cli.opts.merge(o)),
    };
    match run(kind, &opts).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pglock: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(kind: &str, opts: &Opts) -> Result<ExitCode, String> {
    let url = opts
        .database_url
        .clone()
        .ok_or("no database: pass --database-url or set DATABASE_URL")?;
    let mut config = Config::from_url(&url).map_err(|e| e.to_string())?;
    let mut pg = config.pg_config().clone();
    if pg.get_application_name().is_none() {
        pg.application_name("pglock-cli");
        config = Config::new(pg);
    }
    pglock_runtime::register("default", config.allow_standby(true).max_size(2))
        .map_err(|e| e.to_string())?;
    let filter = opts.filter()?;
    let width = terminal_width();

    // Rows to show, and the pids a kill would signal.
    let targets: Vec<(i32, String)> = match kind {
        "locks" => {
            let locks = inspect().locks(&filter).await.map_err(|e| e.to_string())?;
            print_locks(&locks, opts, width);
            dedup(locks.iter().map(|l| (l.pid(), l.backend.query.clone())))
        }
        "blocking" => {
            let pairs = select_pairs(inspect().blocking().await.map_err(|e| e.to_string())?, opts);
            print_pairs(&pairs, opts, width);
            dedup(
                pairs
                    .iter()
                    .map(|p| (p.blocking.pid, p.blocking.query.clone())),
            )
        }
        _ => {
            let pairs = select_pairs(inspect().blocking().await.map_err(|e| e.to_string())?, opts);
            let tree = pglock_runtime::blocking_tree(&pairs);
            print_tree(&tree, opts, width);
            dedup(
                pairs
                    .iter()
                    .map(|p| (p.blocking.pid, p.blocking.query.clone())),
            )
        }
    };
    if !(opts.cancel || opts.terminate) {
        return Ok(ExitCode::SUCCESS);
    }
    let (verb, past) = if opts.terminate {
        ("terminate", "Terminated")
    } else {
        ("cancel", "Cancelled")
    };
    if targets.is_empty() {
        println!("No queries to {verb}.");
        return Ok(ExitCode::from(1));
    }
    if !opts.yes {
        print!("{} {} queries (y/[n])? ", capitalize(verb), targets.len());
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Aborting!");
            return Ok(ExitCode::from(1));
        }
    }
    let pids: Vec<i32> = targets.iter().map(|t| t.0).collect();
    let done = if opts.terminate {
        inspect().terminate(&pids).await
    } else {
        inspect().cancel(&pids).await
    }
    .map_err(|e| e.to_string())?;
    println!("{past} {} queries", done.len());
    Ok(ExitCode::SUCCESS)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn dedup(it: impl Iterator<Item = (i32, String)>) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = Vec::new();
    for (pid, q) in it {
        if !out.iter().any(|(p, _)| *p == pid) {
            out.push((pid, q));
        }
    }
    out
}

fn select_pairs(pairs: Vec<BlockingPair>, opts: &Opts) -> Vec<BlockingPair> {
    let mut out: Vec<BlockingPair> = pairs
        .into_iter()
        .filter(|p| {
            opts.pids.is_empty()
                || opts.pids.contains(&p.blocked.pid)
                || opts.pids.contains(&p.blocking.pid)
        })
        .filter(|p| {
            opts.application_name.as_ref().is_none_or(|a| {
                &p.blocked.application_name == a || &p.blocking.application_name == a
            })
        })
        .filter(|p| {
            opts.min_duration.is_none_or(|min| {
                p.waiting_for
                    .as_ref()
                    .and_then(LockInfo::wait_duration)
                    .is_some_and(|d| d >= min)
            })
        })
        .collect();
    if let Some(n) = opts.limit {
        out.truncate(n);
    }
    out
}

fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
}

fn fmt_duration(d: Option<Duration>) -> String {
    match d {
        None => String::new(),
        Some(d) if d < Duration::from_secs(1) => format!("{}ms", d.as_millis()),
        Some(d) => humantime::format_duration(Duration::from_secs(d.as_secs())).to_string(),
    }
}

fn fmt_time(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(humantime::format_rfc3339_millis(t).to_string())
    })
}

fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

fn target(l: &LockInfo) -> String {
    if let Some(r) = &l.relation {
        return r.clone();
    }
    match l.key {
        Some(LockKey::Int(k)) => return format!("key {k}"),
        Some(LockKey::Pair(a, b)) => return format!("key ({a}, {b})"),
        None => {}
    }
    l.transaction.clone().unwrap_or_default()
}

fn backend_json(b: &Backend) -> Value {
    json!({
        "pid": b.pid,
        "application_name": b.application_name,
        "user": b.user,
        "client_addr": b.client_addr,
        "state": b.state,
        "query": b.query,
        "backend_type": b.backend_type,
        "wait_event_type": b.wait_event_type,
        "wait_event": b.wait_event,
        "query_start": fmt_time(b.query_start),
        "xact_start": fmt_time(b.xact_start),
        "backend_start": fmt_time(b.backend_start),
        "held_for_ms": ms(b.held_for()),
    })
}

fn lock_json(l: &LockInfo) -> Value {
    let key = match l.key {
        Some(LockKey::Int(k)) => json!(k),
        Some(LockKey::Pair(a, b)) => json!([a, b]),
        None => Value::Null,
    };
    json!({
        "pid": l.pid(),
        "locktype": l.locktype,
        "mode": l.mode,
        "granted": l.granted,
        "wait_start": fmt_time(l.wait_start),
        "wait_duration_ms": ms(l.wait_duration()),
        "duration_ms": ms(l.duration()),
        "relation": l.relation,
        "relation_kind": l.relation_kind,
        "key": key,
        "transaction": l.transaction,
        "backend": backend_json(&l.backend),
    })
}

fn node_json(n: &BlockingNode) -> Value {
    json!({
        "backend": backend_json(&n.backend),
        "waiting_for": n.waiting_for.as_ref().map(lock_json),
        "blocked": n.blocked.iter().map(node_json).collect::<Vec<_>>(),
    })
}

/// Prints rows as a table whose last column (the query) is cut to the terminal
/// width, or as expanded records.
fn print_table(headers: &[&str], rows: &[Vec<String>], expanded: bool, width: Option<usize>) {
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

fn print_locks(locks: &[LockInfo], opts: &Opts, width: Option<usize>) {
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

fn print_pairs(pairs: &[BlockingPair], opts: &Opts, width: Option<usize>) {
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

fn print_tree(tree: &[BlockingNode], opts: &Opts, width: Option<usize>) {
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
