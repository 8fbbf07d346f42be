//! `pglock`: list PostgreSQL locks and who blocks whom; cancel or terminate
//! blockers.
//!
//! ```text
//! pglock                       # every lock, waiting first, then longest-held
//! pglock blocking --waiting    # blocked → blocking pairs
//! pglock tree                  # the blocking tree
//! pglock blocking --terminate  # terminate the root blockers (asks first)
//! pglock 4242 4243 --terminate # terminate these backends (asks first)
//! pglock blocking --json       # machine-readable
//! pglock runs app::nightly     # runs of a scheduled job, and slots that ran nowhere
//! pglock terms scheduler       # who leads the election `scheduler`, in which term
//! pglock schema --role app     # the SQL that installs pglock's schema
//! ```
//!
//! Exit status: 0 on success; 1 when there was nothing to cancel or terminate
//! ("No sessions to terminate.") or the prompt was declined ("Aborting!"); 2 on
//! usage errors and database errors.

mod actions;
mod args;
mod json;
mod render;
mod runs;
mod terms;

use std::process::ExitCode;
use std::time::SystemTime;

use clap::Parser;
use pglock_runtime::{inspect, Config};

use args::{select_pairs, Cli, Opts, View};
use render::{print_locks, print_pairs, print_tree, terminal_width};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (view, opts) = Cli::parse().view();
    match run(view, &opts).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pglock: {}", for_cli_users(&e));
            ExitCode::from(2)
        }
    }
}

/// The library's messages speak of registry aliases; the CLI has one, for the
/// database its user named (`--database-url` or `DATABASE_URL`).
fn for_cli_users(message: &str) -> String {
    message
        .replace(" (database alias `default`)", "")
        .replace(
            "the server of alias `default`",
            "the server of --database-url/DATABASE_URL",
        )
        .replace("alias `default`", "the database")
}

/// Registers the `"default"` alias on the URL given (or `DATABASE_URL`).
fn connect(url: Option<&str>, schema: &str) -> Result<(), String> {
    let url = url.ok_or("no database: pass --database-url or set DATABASE_URL")?;
    // Its sessions are named after the program (`pglock`) unless the URL says.
    let config = Config::from_url(url).map_err(|e| e.to_string())?;
    pglock_runtime::register(
        "default",
        config.allow_standby(true).max_size(2).schema(schema),
    )
    .map_err(|e| e.to_string())
}

async fn run(view: View, opts: &Opts) -> Result<ExitCode, String> {
    let width = terminal_width();
    if opts.all_blockers && !(opts.cancel || opts.terminate) {
        return Err("--all-blockers goes with --cancel or --terminate".into());
    }
    if opts.any_backend && !(opts.cancel || opts.terminate) {
        return Err("--any-backend goes with --cancel or --terminate".into());
    }
    match view {
        View::Schema(s) => {
            print!(
                "{}",
                pglock_runtime::schema_sql(&s.schema, s.role.as_deref())
            );
            Ok(ExitCode::SUCCESS)
        }
        View::Runs(r) => {
            connect(r.source.database_url.as_deref(), &r.source.schema)?;
            let since = SystemTime::now()
                .checked_sub(r.since)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let mut q = pglock_runtime::runs().since(since).limit(r.limit);
            if let Some(job) = &r.job {
                q = q.job(job.clone());
            }
            let runs = q.recent().await.map_err(|e| e.to_string())?;
            let missed = q.missed().await.map_err(|e| e.to_string())?;
            runs::print_runs(&runs, &missed, &r, width);
            Ok(ExitCode::SUCCESS)
        }
        View::Terms(t) => {
            connect(t.source.database_url.as_deref(), &t.source.schema)?;
            let mut q = pglock_runtime::terms();
            if let Some(name) = &t.name {
                q = q.name(name.clone());
            }
            let all = q.list().await.map_err(|e| e.to_string())?;
            terms::print_terms(&all, &t, width);
            Ok(ExitCode::SUCCESS)
        }
        View::Locks => {
            if opts.all_blockers {
                return Err("--all-blockers applies to `blocking` and `tree`".into());
            }
            connect(opts.database_url.as_deref(), "pglock")?;
            let filter = opts.filter()?;
            let locks = inspect().locks(&filter).await.map_err(|e| e.to_string())?;
            print_locks(&locks, opts, width);
            signal(|| actions::lock_sessions(&locks), opts, width).await
        }
        View::Blocking | View::Tree => {
            connect(opts.database_url.as_deref(), "pglock")?;
            let all = inspect().blocking().await.map_err(|e| e.to_string())?;
            let pairs = select_pairs(all.clone(), opts);
            if view == View::Blocking {
                print_pairs(&pairs, opts, width);
            } else {
                print_tree(&pglock_runtime::blocking_tree(&pairs), opts, width);
            }
            signal(
                || actions::blockers(&pairs, &all, opts.all_blockers),
                opts,
                width,
            )
            .await
        }
    }
}

/// Cancels or terminates the sessions `plan` picks when asked to.
async fn signal(
    plan: impl FnOnce() -> actions::Plan,
    opts: &Opts,
    width: usize,
) -> Result<ExitCode, String> {
    if !(opts.cancel || opts.terminate) {
        return Ok(ExitCode::SUCCESS);
    }
    actions::signal(&plan().clients_only(opts.any_backend), opts, width).await
}

#[cfg(test)]
mod tests {
    use super::for_cli_users;

    #[test]
    fn messages_speak_of_the_database_not_of_an_alias() {
        let library = "no connection available (database alias `default`): cannot connect to \
                       the server of alias `default`: error connecting to server: Connection \
                       refused (os error 111)";
        let shown = for_cli_users(library);
        assert!(!shown.contains("alias"), "{shown}");
        assert!(shown.contains("--database-url/DATABASE_URL"), "{shown}");
        assert!(shown.contains("Connection refused"), "{shown}");
    }
}
