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

mod actions;
mod args;
mod json;
mod render;

use std::process::ExitCode;

use clap::Parser;
use pglock_runtime::{inspect, Config, LockInfo};

use args::{select_pairs, Cli, Opts, View};
use render::{print_locks, print_pairs, print_tree, terminal_width};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (view, opts) = Cli::parse().view();
    match run(view, &opts).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pglock: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(view: View, opts: &Opts) -> Result<ExitCode, String> {
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
    let targets = match view {
        View::Locks => {
            let locks = inspect().locks(&filter).await.map_err(|e| e.to_string())?;
            print_locks(&locks, opts, width);
            actions::distinct(locks.iter().map(LockInfo::pid))
        }
        View::Blocking | View::Tree => {
            let pairs = select_pairs(inspect().blocking().await.map_err(|e| e.to_string())?, opts);
            if view == View::Blocking {
                print_pairs(&pairs, opts, width);
            } else {
                print_tree(&pglock_runtime::blocking_tree(&pairs), opts, width);
            }
            actions::distinct(pairs.iter().map(|p| p.blocking.pid))
        }
    };
    if !(opts.cancel || opts.terminate) {
        return Ok(ExitCode::SUCCESS);
    }
    actions::signal(&targets, opts).await
}
