//! The `pglock` command end to end, as a subprocess, against sessions arranged to
//! block each other on a throw-away cluster (always one the harness started: the
//! test terminates backends).

use std::process::Stdio;

use pglock_testkit::observe::{
    backend_pid, blocking_chain, blocking_pids, is_gone, parallel_reader, query_value, session,
    wait_until_blocked, wait_until_gone, wait_until_query_starts_with,
};
use pglock_testkit::within;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn pglock(args: &[&str], stdin: Option<&str>) -> Out {
    pglock_on(&pglock_testkit::shared_cluster().url(), args, stdin, None).await
}

/// Runs the `pglock` binary on the database `url`, `stdin` as its input, stdout
/// and stderr piped, `COLUMNS` set to `columns` (unset without).
async fn pglock_on(url: &str, args: &[&str], stdin: Option<&str>, columns: Option<&str>) -> Out {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pglock"));
    command
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("COLUMNS");
    if let Some(c) = columns {
        command.env("COLUMNS", c);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pglock runs");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .unwrap();
    drop(input);
    let out = within(30, "pglock finishes", child.wait_with_output())
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn json(args: &[&str]) -> Vec<Value> {
    json_on(&pglock_testkit::shared_cluster().url(), args).await
}

/// `pglock <args> --json` on `url`, parsed: the array it prints.
async fn json_on(url: &str, args: &[&str]) -> Vec<Value> {
    let mut a = args.to_vec();
    a.push("--json");
    let out = pglock_on(url, &a, None, None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    match serde_json::from_str(&out.stdout).expect("valid JSON") {
        Value::Array(v) => v,
        other => panic!("not an array: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pglock_cli_end_to_end() {
    let url = pglock_testkit::shared_cluster().url();
    let obs = session(&url, "cli-observer").await;
    obs.batch_execute("CREATE TABLE cli_t (x int); CREATE TABLE cli_other (x int)")
        .await
        .unwrap();
    let holder = session(&url, "cli-holder").await;
    let holder_pid = backend_pid(&holder).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE cli_t IN ACCESS SHARE MODE; SELECT pg_advisory_xact_lock(hashtext('x'))")
        .await
        .unwrap();
    let waiter = session(&url, "cli-waiter").await;
    let waiter_pid = backend_pid(&waiter).await;
    let waiting = tokio::spawn(async move {
        waiter
            .batch_execute("BEGIN; LOCK TABLE cli_t; COMMIT")
            .await
            .map(|()| waiter)
    });
    wait_until_blocked(&obs, waiter_pid).await;
    let adv = session(&url, "cli-advisory").await;
    let adv_pid = backend_pid(&adv).await;
    let key = pglock_runtime::LockKey::string("cli-key");
    let pglock_runtime::LockKey::Int(k) = key else {
        unreachable!()
    };
    adv.execute("SELECT pg_advisory_lock($1)", &[&k])
        .await
        .unwrap();

    // Listing by pid, as a table.
    let out = pglock(&[&holder_pid.to_string()], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.lines().next().unwrap().starts_with("PID"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("AccessShareLock") && out.stdout.contains("public.cli_t"),
        "{}",
        out.stdout
    );
    // Rows start with the pid; a query that does not fit its row is under it.
    assert!(
        out.stdout
            .lines()
            .skip(1)
            .all(|l| l.starts_with(&holder_pid.to_string()) || l.starts_with("    ")),
        "{}",
        out.stdout
    );

    // Expanded.
    let out = pglock(&["--expanded", &waiter_pid.to_string()], None).await;
    assert!(out.stdout.contains("-[ RECORD 1 ]-"), "{}", out.stdout);
    assert!(
        out.stdout.contains("APPLICATION | cli-waiter"),
        "{}",
        out.stdout
    );

    // --waiting, parsed back from JSON.
    let rows = json(&["--waiting"]).await;
    assert!(rows.iter().all(|r| r["granted"] == false));
    let w = rows
        .iter()
        .find(|r| r["pid"] == waiter_pid)
        .expect("waiter listed");
    assert_eq!(w["mode"], "AccessExclusiveLock");
    assert_eq!(w["relation"], "public.cli_t");
    assert_eq!(w["backend"]["application_name"], "cli-waiter");
    assert!(w["wait_duration_ms"].is_u64());

    // --relation.
    let rows = json(&["--relation", "cli_t"]).await;
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["relation"] == "public.cli_t"));
    let pids: Vec<i64> = rows.iter().map(|r| r["pid"].as_i64().unwrap()).collect();
    assert!(pids.contains(&i64::from(holder_pid)) && pids.contains(&i64::from(waiter_pid)));
    // Waiting first.
    assert_eq!(rows[0]["granted"], false);

    // --key, hashed like the library does.
    let rows = json(&["--key", "cli-key"]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["pid"], adv_pid);
    assert_eq!(rows[0]["key"], k);
    let rows = json(&["--application-name", "cli-advisory", "--granted"]).await;
    assert!(rows.iter().all(|r| r["pid"] == adv_pid));

    // blocking pairs.
    let pairs = json(&["blocking"]).await;
    let p = pairs
        .iter()
        .find(|p| p["blocked"]["pid"] == waiter_pid)
        .expect("pair");
    assert_eq!(p["blocking"]["pid"], holder_pid);
    assert_eq!(p["waiting_for"]["mode"], "AccessExclusiveLock");
    let out = pglock(&["blocking"], None).await;
    assert!(out.stdout.starts_with("BLOCKED"), "{}", out.stdout);

    // tree.
    let out = pglock(&["tree"], None).await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(&format!("{holder_pid} [cli-holder]")))
        .expect(&out.stdout);
    // The next node (a query that does not fit goes on a line under its node).
    let next = lines[i + 1..]
        .iter()
        .find(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .expect(&out.stdout);
    assert!(
        next.starts_with(&format!("  {waiter_pid} [cli-waiter]")),
        "{}",
        out.stdout
    );
    let tree = json(&["tree"]).await;
    let root = tree
        .iter()
        .find(|n| n["backend"]["pid"] == holder_pid)
        .unwrap();
    assert_eq!(root["blocked"][0]["backend"]["pid"], waiter_pid);

    // A declined prompt kills nothing and exits 1.
    let out = pglock(
        &["blocking", "--terminate", &waiter_pid.to_string()],
        Some("n\n"),
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("(y/[n])") && out.stderr.contains("Aborting!"),
        "{}",
        out.stderr
    );
    assert!(!is_gone(&obs, holder_pid).await);

    // Nothing selected.
    let out = pglock(&["999999", "--terminate", "--yes"], None).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("No sessions to terminate."),
        "{}",
        out.stderr
    );

    // --yes --terminate on `blocking` kills exactly the blocker.
    let out = pglock(
        &["blocking", "--terminate", "--yes", &waiter_pid.to_string()],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("Terminated 1 session."),
        "{}",
        out.stderr
    );
    assert!(
        wait_until_gone(&obs, holder_pid).await,
        "the blocker is gone"
    );
    let waiter = within(10, "the waiter gets the lock", waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !is_gone(&obs, waiter_pid).await && !is_gone(&obs, adv_pid).await,
        "nobody else was touched"
    );
    drop((waiter, holder));

    // Errors: bad key hash, no database.
    let out = pglock(&["--key", "x", "--hash", "md5"], None).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("unknown --hash"), "{}", out.stderr);
}

/// `pglock runs` lists what scheduled calls recorded (and the slots of a
/// `once_per` job that ran nowhere); `pglock schema` prints SQL that installs
/// the schema under another name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pglock_runs_and_schema() {
    let url = pglock_testkit::shared_cluster().url();
    pglock_runtime::register("default", pglock_runtime::Config::from_url(&url).unwrap()).unwrap();
    let job = pglock_runtime::advisory("cli::nightly")
        .no_wait()
        .job("cli::nightly");
    job.clone().slot("2026-12-01").run(async {}).await.unwrap();
    // `run()` cannot tell an `Err` from a value: the run succeeded.
    let second = job.clone().slot("2026-12-02");
    assert!(second
        .run(async { Err::<(), _>("no") })
        .await
        .unwrap()
        .is_err());
    let again = job.clone().slot("2026-12-01").run(async {}).await;
    assert!(again.unwrap_err().is_already_ran(), "one run per slot");
    // A once_per job whose history ends 5 s ago: the slots since then ran nowhere.
    let obs = session(&url, "cli-runs").await;
    obs.batch_execute(
        "INSERT INTO pglock.runs (job, classid, objid, objsubid, slot, slot_start, period, \
         outcome, finished_at) VALUES ('cli::every_second', 0, 1, 1, 'old', \
         date_bin('1 second', now(), timestamptz 'epoch') - interval '5 seconds', \
         interval '1 second', 'succeeded', now())",
    )
    .await
    .unwrap();

    let out = pglock(&["runs", "cli::nightly", "--json"], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    let runs = v["runs"].as_array().unwrap();
    let slots: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r["slot"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        slots,
        [("2026-12-02", "succeeded"), ("2026-12-01", "succeeded")]
    );
    assert_eq!(runs[0]["client_pid"], std::process::id());
    assert!(
        v["missed"].as_array().unwrap().is_empty(),
        "slot jobs have no missed slots"
    );

    let out = pglock(&["runs", "cli::every_second", "--json"], None).await;
    let v: Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    let missed = v["missed"].as_array().unwrap();
    assert!(missed.len() >= 4, "{missed:?}");
    assert!(missed.iter().all(|m| m["period_ms"] == 1000));

    let out = pglock(&["runs"], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("SLOT"), "{}", out.stdout);
    assert!(
        out.stdout.contains("cli::nightly") && out.stdout.contains("Slots that ran on no instance")
    );

    let out = pglock(
        &["schema", "--schema", "cli_pglock", "--role", "postgres"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out
        .stdout
        .contains("CREATE SCHEMA IF NOT EXISTS \"cli_pglock\""));
    obs.batch_execute(&out.stdout)
        .await
        .expect("the printed SQL runs");
    obs.batch_execute(&out.stdout)
        .await
        .expect("and runs again");
    let out = pglock(&["runs", "--schema", "cli_pglock"], None).await;
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "No runs recorded."),
        "{}",
        out.stderr
    );
    let out = pglock(&["runs", "--schema", "never_installed"], None).await;
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "No runs recorded."),
        "{}",
        out.stderr
    );
}

/// A cluster of the test's own: `--terminate` without a pid acts on every blocked
/// chain of the server, so these tests never share one.
fn own_cluster() -> pglock_testkit::Cluster {
    pglock_testkit::Cluster::start().expect("a throw-away cluster starts")
}

/// Waits for a chain's background statement and returns whether it succeeded.
async fn finishes(
    what: &str,
    task: tokio::task::JoinHandle<Result<tokio_postgres::Client, tokio_postgres::Error>>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    within(10, what, task).await.expect("the task ran")
}

/// report (idle in transaction) → `ALTER TABLE` → reader: `--terminate` ends the
/// report only, and the migration then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_ends_the_root_blocker_only() {
    let cluster = own_cluster();
    let url = cluster.url();
    let obs = session(&url, "cli-observer").await;
    let chain = blocking_chain(&url, &obs, "chain").await;

    let out = pglock_on(&url, &["blocking", "--terminate", "--yes"], None, None).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = format!("  {} [report] idle in transaction", chain.report_pid);
    assert!(
        out.stderr.contains("Will terminate 1 session:\n")
            && out.stderr.contains(&report)
            && out.stderr.contains("Terminated 1 session.\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "Left alone: 1 session ({}), blocking but waiting itself",
            chain.migration_pid
        )),
        "{}",
        out.stderr
    );
    assert!(
        wait_until_gone(&obs, chain.report_pid).await,
        "the report is gone"
    );
    let migration = finishes("the migration runs", chain.migration).await;
    assert!(migration.is_ok(), "the migration ran: {migration:?}");
    let reader = finishes("the reader reads", chain.reader).await;
    assert!(reader.is_ok(), "the reader read: {reader:?}");
    assert!(
        !is_gone(&obs, chain.migration_pid).await && !is_gone(&obs, chain.reader_pid).await,
        "the migration's and the reader's sessions live on"
    );
    let columns: i64 = query_value(
        &obs,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'chain' AND column_name = 'y'",
    )
    .await;
    assert_eq!(columns, 1, "the migration added its column");

    // Nothing is blocked any more.
    let out = pglock_on(&url, &["blocking", "--terminate", "--yes"], None, None).await;
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (1, "No blocked sessions.\n", "No sessions to terminate.\n")
    );
    let out = pglock_on(&url, &["tree"], None, None).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "No blocked sessions.\n")
    );
    let out = pglock_on(&url, &["tree", "--json"], None, None).await;
    assert_eq!((out.code, out.stdout.trim()), (0, "[]"));
}

/// `--all-blockers` ends every blocker: the report and the waiting migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_blockers_ends_every_blocker() {
    let cluster = own_cluster();
    let url = cluster.url();
    let obs = session(&url, "cli-observer").await;
    let chain = blocking_chain(&url, &obs, "chain").await;

    let out = pglock_on(
        &url,
        &["tree", "--terminate", "--all-blockers", "--yes"],
        None,
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("Will terminate 2 sessions:\n")
            && out.stderr.contains("Terminated 2 sessions.\n")
            && !out.stderr.contains("Left alone"),
        "{}",
        out.stderr
    );
    assert!(wait_until_gone(&obs, chain.report_pid).await);
    assert!(wait_until_gone(&obs, chain.migration_pid).await);
    // The two signals are not one instant: the migration may get its lock, and
    // finish, between the report's end and its own. Either way it is over, and
    // its session is gone (above).
    let _ = finishes("the migration ends", chain.migration).await;
    let reader = finishes("the reader reads", chain.reader).await;
    assert!(reader.is_ok(), "the reader read: {reader:?}");
    assert!(
        !is_gone(&obs, chain.reader_pid).await,
        "the reader's session lives on"
    );

    // Without --cancel/--terminate, --all-blockers is a usage error.
    let out = pglock_on(&url, &["tree", "--all-blockers"], None, None).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
}

/// The prompt lists the sessions on stderr: stdout holds the view alone (JSON
/// that parses); a declined prompt ends nothing. `--cancel` speaks of queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_is_on_stderr() {
    let cluster = own_cluster();
    let url = cluster.url();
    let obs = session(&url, "cli-observer").await;
    let chain = blocking_chain(&url, &obs, "chain").await;

    for view in ["blocking", "tree"] {
        let out = pglock_on(&url, &[view, "--terminate", "--json"], Some("n\n"), None).await;
        assert_eq!(out.code, 1, "{}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).expect("stdout is JSON alone");
        assert_eq!(
            v.as_array().map(Vec::len),
            Some(if view == "tree" { 1 } else { 2 })
        );
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines[0], "Will terminate 1 session:", "{}", out.stderr);
        assert!(
            lines[1].starts_with(&format!(
                "  {} [report] idle in transaction, blocks 2 sessions: ",
                chain.report_pid
            )),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr
                .ends_with("Terminate 1 session (y/[n])? Aborting!\n"),
            "{}",
            out.stderr
        );
    }
    let out = pglock_on(
        &url,
        &["blocking", "--cancel", "--all-blockers"],
        Some("no\n"),
        None,
    )
    .await;
    assert!(
        out.stderr
            .contains("Will cancel the queries of 2 sessions:\n")
            && out
                .stderr
                .contains("Cancel the queries of 2 sessions (y/[n])? Aborting!"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("(y/[n])"), "{}", out.stdout);
    assert!(!is_gone(&obs, chain.report_pid).await);
    assert_eq!(
        blocking_pids(&obs, chain.migration_pid).await,
        [chain.report_pid]
    );
}

/// Tables and trees fit `COLUMNS`, and 100 columns when piped without it; the
/// migration's query stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_fits_the_width() {
    let cluster = own_cluster();
    let url = cluster.url();
    let obs = session(&url, "cli-observer").await;
    let chain = blocking_chain(&url, &obs, "chain_with_a_rather_long_table_name").await;
    let alter = "ALTER TABLE chain_with_a_rather_long_table_name ADD COLUMN y int";

    for (columns, width) in [
        (Some("100"), 100),
        (None, 100),
        (Some("80"), 80),
        (Some("160"), 160),
    ] {
        for view in [&[][..], &["blocking"], &["tree"]] {
            let out = pglock_on(&url, view, None, columns).await;
            assert_eq!(out.code, 0, "{}", out.stderr);
            let longest = out.stdout.lines().map(|l| l.chars().count()).max();
            assert!(
                longest.is_some_and(|l| l <= width),
                "{view:?} at {columns:?}: a line of {longest:?} characters:\n{}",
                out.stdout
            );
            assert!(
                out.stdout.contains(alter),
                "{view:?} at {columns:?}: the query is cut:\n{}",
                out.stdout
            );
        }
    }
    // The tree: report, then the migration under it, then the reader.
    let out = pglock_on(&url, &["tree"], None, Some("100")).await;
    let heads: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(heads.len(), 3, "{}", out.stdout);
    assert!(heads[0].starts_with(&format!("{} [report]", chain.report_pid)));
    assert!(heads[1].starts_with(&format!("  {} [migration]", chain.migration_pid)));
    assert!(heads[2].starts_with(&format!("    {} [reader]", chain.reader_pid)));
    drop(chain);
}

/// A holder whose last statement is pglock's heartbeat shows `(pglock
/// heartbeat)`, not the heartbeat's SQL, as its query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_is_named_not_shown() {
    let cluster = own_cluster();
    let url = cluster.url();
    let obs = session(&url, "cli-observer").await;
    pglock_runtime::register(
        "cli-heartbeat",
        pglock_runtime::Config::from_url(&url)
            .unwrap()
            .heartbeat(Some(std::time::Duration::from_millis(20))),
    )
    .unwrap();
    let guard = pglock_runtime::advisory("cli::heartbeat")
        .using("cli-heartbeat")
        .acquire()
        .await
        .unwrap();
    let holder = guard.connection().unwrap().backend_pid();
    wait_until_query_starts_with(&obs, holder, "/* pglock heartbeat */").await;
    let pglock_runtime::LockKey::Int(key) = guard.key() else {
        unreachable!()
    };
    let (_waiter, waiter_pid) = {
        let s = session(&url, "cli-waiter").await;
        let pid = backend_pid(&s).await;
        let task = tokio::spawn(async move {
            s.execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .map(|_| s)
        });
        (task, pid)
    };
    wait_until_blocked(&obs, waiter_pid).await;

    let out = pglock_on(&url, &["tree"], None, Some("100")).await;
    assert!(
        out.stdout.starts_with(&format!("{holder} ["))
            && out
                .stdout
                .lines()
                .next()
                .unwrap()
                .ends_with(": (pglock heartbeat)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("pg_locks"), "{}", out.stdout);
    let out = pglock_on(
        &url,
        &["--granted", "--key", "cli::heartbeat"],
        None,
        Some("200"),
    )
    .await;
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with("(pglock heartbeat)")),
        "{}",
        out.stdout
    );
    let tree = json_on(&url, &["tree"]).await;
    assert_eq!(tree[0]["backend"]["pid"], holder);
    assert_eq!(tree[0]["backend"]["pglock_heartbeat"], true);
    assert!(tree[0]["backend"]["query"]
        .as_str()
        .unwrap()
        .starts_with("/* pglock heartbeat */"));
    assert_eq!(tree[0]["blocked"][0]["backend"]["pglock_heartbeat"], false);
    guard.release().await.unwrap();
}

/// Issue 15.15: a database that cannot be reached is named as the CLI user
/// gave it, with the cause, not as a registry alias.
#[tokio::test]
async fn an_unreachable_database_is_explained_in_the_cli_users_words() {
    let port = pglock_testkit::free_port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pglock"))
        .env("DATABASE_URL", format!("postgres://u@127.0.0.1:{port}/db"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Connection refused"), "the cause: {stderr}");
    assert!(!stderr.contains("alias"), "no registry alias: {stderr}");
}

/// `pglock terms` shows who leads an election, from another process: the
/// current term, held, with the leader's process id; a leadership given up
/// reads as no longer held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pglock_terms_shows_the_current_leader() {
    let url = pglock_testkit::shared_cluster().url();
    pglock_runtime::register("cli-terms", pglock_runtime::Config::from_url(&url).unwrap()).unwrap();
    let name = format!("cli::leader::{}", std::process::id());
    let candidate = pglock_runtime::leader(name.clone())
        .using("cli-terms")
        .join()
        .unwrap();
    let term = within(20, "elected", candidate.elected()).await.unwrap();

    let out = pglock(&["terms", &name, "--json"], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    let terms = v["terms"].as_array().unwrap();
    assert_eq!(terms.len(), 1, "{terms:?}");
    assert_eq!(terms[0]["term"], term);
    assert_eq!(terms[0]["holding"], true);
    assert_eq!(terms[0]["client_pid"], std::process::id());

    let out = pglock(&["terms"], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("NAME"), "{}", out.stdout);
    assert!(out.stdout.contains(&name), "{}", out.stdout);

    candidate.leave().await;
    let out = pglock(&["terms", &name, "--json"], None).await;
    let v: Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    assert_eq!(v["terms"][0]["holding"], false, "{v}");
}

/// Issue 15.16: `--terminate` in the locks view acted on every session shown,
/// parallel workers (and autovacuum workers, WAL senders) included. Only client
/// backends are acted on unless `--any-backend`; the others are listed as left
/// alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_acts_on_client_backends_only_unless_asked() {
    let url = pglock_testkit::shared_cluster().url();
    let obs = session(&url, "cli-observer").await;
    obs.batch_execute("CREATE TABLE cli_par (x int); INSERT INTO cli_par VALUES (1)")
        .await
        .unwrap();
    let (query, leader, worker) = parallel_reader(&url, &obs, "cli-parallel", "cli_par", 60).await;
    let left_alone = |worker: i32| {
        format!(
            "Left alone: 1 session ({worker}, parallel worker), not a client backend; \
             --any-backend includes it.\n"
        )
    };

    // Only the worker shown: nothing to act on, and both live on.
    let w = worker.to_string();
    let out = pglock(&["locks", &w, "--terminate", "--yes"], None).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&left_alone(worker))
            && out.stderr.contains("No sessions to terminate.\n"),
        "{}",
        out.stderr
    );
    assert!(!is_gone(&obs, worker).await && !is_gone(&obs, leader).await);

    // The table's locks: the leader is terminated, the worker left alone.
    let out = pglock(
        &["locks", "--relation", "cli_par", "--terminate", "--yes"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("Will terminate 1 session:\n")
            && out.stderr.contains(&format!("  {leader} [cli-parallel]"))
            && out.stderr.contains(&left_alone(worker))
            && out.stderr.contains("Terminated 1 session.\n"),
        "{}",
        out.stderr
    );
    assert!(wait_until_gone(&obs, leader).await, "the leader is gone");
    let ended = within(10, "the leader's query ends", query).await.unwrap();
    assert!(ended.is_err(), "the leader's session was terminated");

    // Asked for: the worker is terminated, and its leader's query fails with it
    // (its session may end too).
    let (query, _, worker) = parallel_reader(&url, &obs, "cli-parallel", "cli_par", 60).await;
    let w = worker.to_string();
    let out = pglock(
        &["locks", &w, "--terminate", "--any-backend", "--yes"],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("Terminated 1 session.\n") && !out.stderr.contains("Left alone"),
        "{}",
        out.stderr
    );
    assert!(wait_until_gone(&obs, worker).await, "the worker is gone");
    let ended = within(10, "the leader's query ends", query).await.unwrap();
    assert!(ended.is_err(), "the query lost its worker");

    let out = pglock(&["locks", "--any-backend"], None).await;
    assert_ne!(
        out.code, 0,
        "--any-backend goes with --cancel or --terminate"
    );
}
