//! The command line: subcommands and options, and what they select (a server-side
//! lock filter, and the blocking pairs kept).

use std::time::Duration;

use clap::{Parser, Subcommand};
use pglock_runtime::{BlockingPair, KeyHash, LockFilter, LockInfo, LockKey};

/// Shown after the options of `pglock --help` (and of the subcommands).
const AFTER_HELP: &str = "\
Output: tables and trees fit the width of the terminal: $COLUMNS when set, else \
the terminal's width, else 100 columns (stdout not a terminal). A query ends its \
row when it fits there whole (in tables: or gets 40 characters at least), else it \
goes on a line of its own under its row; what is still too long is cut with `…`. --expanded and --json print values in full. A \
session whose last statement was pglock's own heartbeat (the check that it still \
holds its advisory lock) shows `(pglock heartbeat)` as its query: what the \
application ran before is not known to the server (`pglock_heartbeat` in --json).

--cancel/--terminate: for `blocking` and `tree` they act on the root blockers \
only, the sessions that block others and wait for nobody (in report → ALTER TABLE \
→ reader: the report, not the waiting ALTER TABLE); --all-blockers acts on every \
blocker shown. Only client backends are acted on: autovacuum workers, WAL \
senders, parallel and background workers are left alone unless --any-backend. \
The sessions acted on, the (y/[n]) prompt and the summary go to \
stderr; stdout has only the view (the JSON with --json).";

#[derive(Parser, Debug)]
#[command(
    name = "pglock",
    version,
    about = "PostgreSQL locks and who blocks whom",
    long_about = None,
    after_help = AFTER_HELP
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every lock of the database, waiting first, then longest-held (the default).
    #[command(after_help = AFTER_HELP)]
    Locks(Opts),
    /// Blocked → blocking pairs.
    #[command(after_help = AFTER_HELP)]
    Blocking(Opts),
    /// The blocking tree: each blocker with the sessions waiting for it.
    #[command(after_help = AFTER_HELP)]
    Tree(Opts),
    /// Recent runs of scheduled jobs (`once_per` / `slot`), and the slots of
    /// `once_per` jobs that ran on no instance.
    Runs(RunsOpts),
    /// Leader elections and fenced locks: the last term of each name, who got
    /// it, and whether that session still holds the lock (the current leader).
    Terms(TermsOpts),
    /// Print the SQL that installs pglock's own schema, for a role that may not
    /// create it (`pglock schema | psql "$ADMIN_URL"`).
    Schema(SchemaOpts),
}

/// Where the views of pglock's schema (`runs`, `terms`) read.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaSource {
    /// pglock's schema, if not `pglock` (`Config::schema`).
    #[arg(long, default_value = "pglock")]
    pub(crate) schema: String,
    /// Database to read; defaults to $DATABASE_URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
}

/// `pglock terms`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub(crate) struct TermsOpts {
    /// Only this election's (or fenced lock's) name.
    pub(crate) name: Option<String>,
    /// JSON output: `{"terms": [...]}`.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) source: SchemaSource,
}

/// `pglock runs`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunsOpts {
    /// Only this job: the annotated function's path (`app::jobs::nightly`) or the
    /// name given to `AdvisoryLock::job`.
    pub(crate) job: Option<String>,
    /// How far back to look (`30m`, `24h`, `7d`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub(crate) since: Duration,
    /// At most this many runs (newest first).
    #[arg(long, short = 'l', default_value_t = 100)]
    pub(crate) limit: u32,
    /// JSON output: `{"runs": [...], "missed": [...]}`.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) source: SchemaSource,
}

/// `pglock schema`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaOpts {
    /// The schema's name (`Config::schema`).
    #[arg(long, default_value = "pglock")]
    pub(crate) schema: String,
    /// Also grant this role what pglock needs in the schema.
    #[arg(long)]
    pub(crate) role: Option<String>,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct Opts {
    /// Only these backend pids (for `blocking` and `tree`: either side of a pair).
    pub(crate) pids: Vec<i32>,
    /// Only granted (held) locks.
    #[arg(long, conflicts_with = "waiting")]
    pub(crate) granted: bool,
    /// Only locks being waited for.
    #[arg(long)]
    pub(crate) waiting: bool,
    /// Only locks on this relation (`table`, `schema.table`, `"Odd Name"`).
    #[arg(long)]
    pub(crate) relation: Option<String>,
    /// Only this advisory key: an integer, `a,b` for a two-int key, or a string
    /// hashed with `--hash`.
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// How `--key` strings are hashed: django_pglock, django_pglocks,
    /// django_pglocks_v1, postgres_lock, sqlx.
    #[arg(long, default_value = "django_pglock")]
    pub(crate) hash: String,
    /// Only locks waited for or held at least this long (`500ms`, `5s`, `2m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) min_duration: Option<Duration>,
    /// Only sessions with this application_name.
    #[arg(long)]
    pub(crate) application_name: Option<String>,
    /// At most this many rows.
    #[arg(long, short = 'l')]
    pub(crate) limit: Option<usize>,
    /// One attribute per line.
    #[arg(long, short = 'e')]
    pub(crate) expanded: bool,
    /// JSON output (fields documented in the README).
    #[arg(long, conflicts_with = "expanded")]
    pub(crate) json: bool,
    /// Cancel the statements of the sessions shown (for `blocking`/`tree`: of the
    /// root blockers, which block others and wait for nobody).
    #[arg(long, conflicts_with = "terminate")]
    pub(crate) cancel: bool,
    /// Terminate the sessions shown (for `blocking`/`tree`: the root blockers,
    /// which block others and wait for nobody).
    #[arg(long)]
    pub(crate) terminate: bool,
    /// For `blocking`/`tree` with --cancel/--terminate: every blocker shown, also
    /// those that wait themselves.
    #[arg(long)]
    pub(crate) all_blockers: bool,
    /// With --cancel/--terminate: also sessions that are not client backends
    /// (autovacuum workers, WAL senders, parallel and background workers),
    /// which are left alone by default.
    #[arg(long)]
    pub(crate) any_backend: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Database to inspect; defaults to $DATABASE_URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
}

impl Opts {
    /// Options given after a subcommand win over those given before it.
    pub(crate) fn merge(self, sub: Opts) -> Opts {
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
            all_blockers: self.all_blockers || sub.all_blockers,
            any_backend: self.any_backend || sub.any_backend,
            yes: self.yes || sub.yes,
            database_url: sub.database_url.or(self.database_url),
        }
    }

    pub(crate) fn filter(&self) -> Result<LockFilter, String> {
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

/// What to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum View {
    /// Every lock.
    Locks,
    /// Blocked → blocking pairs.
    Blocking,
    /// The blocking tree.
    Tree,
    /// The record of scheduled runs.
    Runs(RunsOpts),
    /// The terms of elections and fenced locks.
    Terms(TermsOpts),
    /// pglock's schema as SQL.
    Schema(SchemaOpts),
}

impl Cli {
    /// The view asked for, and the options before and after the subcommand
    /// merged.
    pub(crate) fn view(self) -> (View, Opts) {
        match self.command {
            None => (View::Locks, self.opts),
            Some(Command::Locks(o)) => (View::Locks, self.opts.merge(o)),
            Some(Command::Blocking(o)) => (View::Blocking, self.opts.merge(o)),
            Some(Command::Tree(o)) => (View::Tree, self.opts.merge(o)),
            Some(Command::Runs(r)) => (View::Runs(r), self.opts),
            Some(Command::Terms(t)) => (View::Terms(t), self.opts),
            Some(Command::Schema(s)) => (View::Schema(s), self.opts),
        }
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

pub(crate) fn select_pairs(pairs: Vec<BlockingPair>, opts: &Opts) -> Vec<BlockingPair> {
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
