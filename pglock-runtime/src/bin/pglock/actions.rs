//! `--cancel` and `--terminate`: which sessions to act on, the confirmation (on
//! stderr, so that stdout holds only the view), then the signal.
//!
//! For `blocking` and `tree` the sessions acted on are the root blockers of the
//! pairs shown: the sessions that block others and wait for nobody. In a chain
//! report (idle in transaction) → `ALTER TABLE` → reader, that is the report alone;
//! the waiting `ALTER TABLE` also blocks the reader, but terminating it would kill
//! the session the command is meant to unblock. `--all-blockers` acts on every
//! blocker shown.
//!
//! In every view only client backends are acted on unless `--any-backend`:
//! autovacuum workers, WAL senders, parallel and background workers hold locks
//! too (and show in the views), but ending one is rarely what the operator meant
//! (a parallel worker's leader fails with it; a killed walsender drops a
//! standby), so they are listed as left alone.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::process::ExitCode;

use pglock_runtime::{inspect, Backend, BlockingPair, LockInfo};

use crate::args::Opts;
use crate::render::{head_and_query, session_head, shown_query};

/// A session to cancel or terminate, as the prompt lists it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) backend: Backend,
    pub(crate) waiting_for: Option<LockInfo>,
    /// How many sessions wait for it, directly or behind others (for `blocking`
    /// and `tree`).
    pub(crate) blocks: Option<usize>,
}

/// The sessions to act on, and the blockers shown that are left alone.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) targets: Vec<Target>,
    /// Blockers shown that wait themselves (not root blockers), by pid.
    pub(crate) spared: Vec<i32>,
    /// Sessions that are not client backends, left alone: pid and
    /// `backend_type` (`None`: not visible to the role).
    pub(crate) not_clients: Vec<(i32, Option<String>)>,
}

impl Plan {
    /// Without the targets that are not client backends (unless `any_backend`),
    /// which join [`not_clients`](Plan::not_clients).
    pub(crate) fn clients_only(mut self, any_backend: bool) -> Plan {
        if any_backend {
            return self;
        }
        let (clients, others): (Vec<Target>, Vec<Target>) = self
            .targets
            .into_iter()
            .partition(|t| t.backend.is_client());
        self.targets = clients;
        self.not_clients = others
            .into_iter()
            .map(|t| (t.backend.pid, t.backend.backend_type))
            .collect();
        self
    }
}

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

/// For the locks view: every session shown.
pub(crate) fn lock_sessions(locks: &[LockInfo]) -> Plan {
    let targets = distinct(locks.iter().map(LockInfo::pid))
        .into_iter()
        .filter_map(|pid| locks.iter().find(|l| l.pid() == pid))
        .map(|l| Target {
            backend: l.backend.clone(),
            waiting_for: None,
            blocks: None,
        })
        .collect();
    Plan {
        targets,
        spared: Vec::new(),
        not_clients: Vec::new(),
    }
}

/// For `blocking` and `tree`: the root blockers of the pairs `shown`, or with
/// `every_blocker` each blocker shown (see [`pick`]).
pub(crate) fn blockers(shown: &[BlockingPair], all: &[BlockingPair], every_blocker: bool) -> Plan {
    let edges = |pairs: &[BlockingPair]| -> Vec<(i32, i32)> {
        pairs
            .iter()
            .map(|p| (p.blocked.pid, p.blocking.pid))
            .collect()
    };
    let mut backend: HashMap<i32, &Backend> = HashMap::new();
    let mut waiting: HashMap<i32, &LockInfo> = HashMap::new();
    for p in all.iter().chain(shown) {
        backend.entry(p.blocked.pid).or_insert(&p.blocked);
        backend.entry(p.blocking.pid).or_insert(&p.blocking);
        if let Some(w) = &p.waiting_for {
            waiting.entry(p.blocked.pid).or_insert(w);
        }
    }
    let picked = pick(&edges(shown), &edges(all), every_blocker);
    let targets = picked
        .targets
        .iter()
        .map(|&(pid, blocks)| Target {
            backend: backend[&pid].clone(),
            waiting_for: waiting.get(&pid).map(|w| (*w).clone()),
            blocks: Some(blocks),
        })
        .collect();
    Plan {
        targets,
        spared: picked.spared,
        not_clients: Vec::new(),
    }
}

/// Pids picked by [`pick`]: each with how many sessions wait for it (directly or
/// behind others), and the blockers shown that are not picked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Picked {
    pub(crate) targets: Vec<(i32, usize)>,
    pub(crate) spared: Vec<i32>,
}

/// From blocked → blocking pid pairs: the root blockers of the pairs `shown`,
/// followed through `all` (every pair on the server, so that a filter that shows
/// only the end of a chain still finds its root) up to the sessions that wait for
/// nobody; or with `every_blocker` each blocker shown. A chain that ends in a
/// cycle (a deadlock the server has not broken yet) has no root: the lowest pid
/// of the cycle stands for it, as in the tree.
pub(crate) fn pick(shown: &[(i32, i32)], all: &[(i32, i32)], every_blocker: bool) -> Picked {
    let mut blockers_of: HashMap<i32, BTreeSet<i32>> = HashMap::new();
    let mut waiters_of: HashMap<i32, BTreeSet<i32>> = HashMap::new();
    for &(blocked, blocking) in all.iter().chain(shown) {
        blockers_of.entry(blocked).or_default().insert(blocking);
        waiters_of.entry(blocking).or_default().insert(blocked);
    }
    let shown_blockers = distinct(shown.iter().map(|&(_, b)| b));
    let pids = if every_blocker {
        shown_blockers.clone()
    } else {
        distinct(shown_blockers.iter().flat_map(|&b| {
            let up = closure(b, &blockers_of);
            let roots: Vec<i32> = up
                .iter()
                .copied()
                .filter(|q| !blockers_of.contains_key(q))
                .collect();
            if roots.is_empty() {
                up.iter()
                    .copied()
                    .filter(|&q| closure_above(q, &blockers_of).contains(&q))
                    .min()
                    .into_iter()
                    .collect()
            } else {
                roots
            }
        }))
    };
    Picked {
        targets: pids
            .iter()
            .map(|&pid| {
                let below = closure_above(pid, &waiters_of);
                (pid, below.iter().filter(|&&q| q != pid).count())
            })
            .collect(),
        spared: shown_blockers
            .into_iter()
            .filter(|b| !pids.contains(b))
            .collect(),
    }
}

/// `pid` and every pid reachable from it through `edges`.
fn closure(pid: i32, edges: &HashMap<i32, BTreeSet<i32>>) -> BTreeSet<i32> {
    let mut seen = closure_above(pid, edges);
    seen.insert(pid);
    seen
}

/// Every pid reachable from `pid` through one edge or more (`pid` itself only
/// when it is on a cycle).
fn closure_above(pid: i32, edges: &HashMap<i32, BTreeSet<i32>>) -> BTreeSet<i32> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<i32> = edges.get(&pid).into_iter().flatten().copied().collect();
    while let Some(q) = todo.pop() {
        if seen.insert(q) {
            todo.extend(edges.get(&q).into_iter().flatten().copied());
        }
    }
    seen
}

/// `1 session`, `2 sessions`.
pub(crate) fn sessions(n: usize) -> String {
    if n == 1 {
        "1 session".to_owned()
    } else {
        format!("{n} sessions")
    }
}

/// What is done, in the words of the prompt and the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Terminate,
    Cancel,
}

impl Act {
    /// `terminate 2 sessions`, `cancel the query of 1 session` (lowercase).
    fn phrase(self, n: usize) -> String {
        match self {
            Act::Terminate => format!("terminate {}", sessions(n)),
            Act::Cancel if n == 1 => "cancel the query of 1 session".to_owned(),
            Act::Cancel => format!("cancel the queries of {n} sessions"),
        }
    }

    fn done(self, n: usize) -> String {
        match self {
            Act::Terminate => format!("Terminated {}", sessions(n)),
            Act::Cancel if n == 1 => "Cancelled the query of 1 session".to_owned(),
            Act::Cancel => format!("Cancelled the queries of {n} sessions"),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The lines that say what will be done: the sessions, one each, and the blockers
/// left alone.
pub(crate) fn plan_lines(plan: &Plan, terminate: bool, width: usize) -> Vec<String> {
    let act = if terminate {
        Act::Terminate
    } else {
        Act::Cancel
    };
    let mut out = Vec::new();
    if !plan.targets.is_empty() || plan.not_clients.is_empty() {
        out.push(format!("Will {}:", act.phrase(plan.targets.len())));
    }
    for t in &plan.targets {
        let mut head = session_head(&t.backend, t.waiting_for.as_ref());
        if let Some(n) = t.blocks {
            head.push_str(&format!(", blocks {}", sessions(n)));
        }
        out.extend(head_and_query(2, &head, &shown_query(&t.backend), width));
    }
    if !plan.spared.is_empty() {
        let pids: Vec<String> = plan.spared.iter().map(i32::to_string).collect();
        out.push(format!(
            "Left alone: {} ({}), blocking but waiting {}; --all-blockers includes {}.",
            sessions(plan.spared.len()),
            pids.join(", "),
            if plan.spared.len() == 1 {
                "itself"
            } else {
                "themselves"
            },
            if plan.spared.len() == 1 { "it" } else { "them" },
        ));
    }
    out.extend(not_clients_line(&plan.not_clients));
    out
}

/// `Left alone: 1 session (412, autovacuum worker), not a client backend;
/// --any-backend includes it.`
fn not_clients_line(not_clients: &[(i32, Option<String>)]) -> Option<String> {
    if not_clients.is_empty() {
        return None;
    }
    let each: Vec<String> = not_clients
        .iter()
        .map(|(pid, kind)| format!("{pid}, {}", kind.as_deref().unwrap_or("type not visible")))
        .collect();
    let one = not_clients.len() == 1;
    Some(format!(
        "Left alone: {} ({}), not {}; --any-backend includes {}.",
        sessions(not_clients.len()),
        each.join("; "),
        if one {
            "a client backend"
        } else {
            "client backends"
        },
        if one { "it" } else { "them" },
    ))
}

/// Cancels or terminates (as `opts` says) the sessions of `plan`, after listing
/// them and asking unless `--yes`, all on stderr: exit status 1 when there is
/// nothing to act on or the prompt is declined.
pub(crate) async fn signal(plan: &Plan, opts: &Opts, width: usize) -> Result<ExitCode, String> {
    let act = if opts.terminate {
        Act::Terminate
    } else {
        Act::Cancel
    };
    let n = plan.targets.len();
    if n == 0 {
        let what = match act {
            Act::Terminate => "terminate",
            Act::Cancel => "cancel",
        };
        if let Some(line) = not_clients_line(&plan.not_clients) {
            eprintln!("{line}");
        }
        eprintln!("No sessions to {what}.");
        return Ok(ExitCode::from(1));
    }
    for line in plan_lines(plan, opts.terminate, width) {
        eprintln!("{line}");
    }
    if !opts.yes {
        eprint!("{} (y/[n])? ", capitalize(&act.phrase(n)));
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Aborting!");
            return Ok(ExitCode::from(1));
        }
    }
    let pids: Vec<i32> = plan.targets.iter().map(|t| t.backend.pid).collect();
    let done = if opts.terminate {
        inspect().terminate(&pids).await
    } else {
        inspect().cancel(&pids).await
    }
    .map_err(|e| e.to_string())?;
    let gone: Vec<String> = pids
        .iter()
        .filter(|p| !done.contains(p))
        .map(i32::to_string)
        .collect();
    if gone.is_empty() {
        eprintln!("{}.", act.done(done.len()));
    } else {
        eprintln!(
            "{} ({} had already ended).",
            act.done(done.len()),
            gone.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// report 1 → migration 2 → reader 3 (blocked, blocking).
    const CHAIN: [(i32, i32); 2] = [(2, 1), (3, 2)];

    #[test]
    fn the_root_blocker_of_a_chain_is_its_head() {
        let p = pick(&CHAIN, &CHAIN, false);
        assert_eq!(
            p,
            Picked {
                targets: vec![(1, 2)],
                spared: vec![2]
            }
        );
        let all = pick(&CHAIN, &CHAIN, true);
        assert_eq!(all.targets, [(1, 2), (2, 1)]);
        assert!(all.spared.is_empty());
    }

    #[test]
    fn a_filter_that_shows_the_end_of_a_chain_still_finds_its_root() {
        let p = pick(&[(3, 2)], &CHAIN, false);
        assert_eq!(p.targets, [(1, 2)]);
        assert_eq!(p.spared, [2]);
        assert_eq!(pick(&[(3, 2)], &CHAIN, true).targets, [(2, 1)]);
    }

    #[test]
    fn every_root_of_a_waiter_is_picked() {
        // 3 waits for 1 and 2 (two readers holding what it wants).
        let pairs = [(3, 1), (3, 2), (4, 3)];
        assert_eq!(pick(&pairs, &pairs, false).targets, [(1, 2), (2, 2)]);
    }

    #[test]
    fn a_cycle_is_stood_for_by_its_lowest_pid() {
        // 5 ↔ 7, and 9 waits for 7.
        let pairs = [(5, 7), (7, 5), (9, 7)];
        let p = pick(&pairs, &pairs, false);
        assert_eq!(p.targets, [(5, 2)]);
        assert_eq!(p.spared, [7]);
    }

    #[test]
    fn nothing_shown_picks_nothing() {
        assert_eq!(
            pick(&[], &CHAIN, false),
            Picked {
                targets: vec![],
                spared: vec![]
            }
        );
    }

    #[test]
    fn words_agree_with_numbers() {
        assert_eq!(sessions(1), "1 session");
        assert_eq!(sessions(2), "2 sessions");
        assert_eq!(Act::Terminate.phrase(1), "terminate 1 session");
        assert_eq!(Act::Terminate.done(3), "Terminated 3 sessions");
        assert_eq!(Act::Cancel.phrase(1), "cancel the query of 1 session");
        assert_eq!(Act::Cancel.done(2), "Cancelled the queries of 2 sessions");
        let plan = Plan {
            targets: Vec::new(),
            spared: vec![4, 5],
            not_clients: Vec::new(),
        };
        assert_eq!(
            plan_lines(&plan, true, 100),
            [
                "Will terminate 0 sessions:",
                "Left alone: 2 sessions (4, 5), blocking but waiting themselves; \
                 --all-blockers includes them."
            ]
        );
    }
}
