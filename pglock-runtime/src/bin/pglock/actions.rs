//! `--cancel` and `--terminate`: confirm, then signal the selected backends.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use pglock_runtime::inspect;

use crate::args::Opts;

/// `pids` without repeats, in the order first seen.
pub(crate) fn distinct(pids: impl Iterator<Item = i32>) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    for pid in pids {
        if !out.contains(&pid) {
            out.push(pid);
        }
    }
    out
}

/// Cancels or terminates (as `opts` says) the backends `pids`, after asking
/// unless `--yes`: exit status 1 when there is nothing to signal or the prompt
/// is declined.
pub(crate) async fn signal(pids: &[i32], opts: &Opts) -> Result<ExitCode, String> {
    let (verb, past) = if opts.terminate {
        ("terminate", "Terminated")
    } else {
        ("cancel", "Cancelled")
    };
    if pids.is_empty() {
        println!("No queries to {verb}.");
        return Ok(ExitCode::from(1));
    }
    if !opts.yes {
        print!("{} {} queries (y/[n])? ", capitalize(verb), pids.len());
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Aborting!");
            return Ok(ExitCode::from(1));
        }
    }
    let done = if opts.terminate {
        inspect().terminate(pids).await
    } else {
        inspect().cancel(pids).await
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
