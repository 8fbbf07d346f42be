//! The `pglock` command end to end, as a subprocess, against sessions arranged to
//! block each other on a throw-away cluster (always one the harness started: the
//! test terminates backends).

use std::process::Stdio;

use pglock_testkit::observe::{backend_pid, is_gone, session, wait_until_blocked, wait_until_gone};
use pglock_testkit::within;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn pglock(args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pglock"))
        .args(args)
        .env("DATABASE_URL", pglock_testkit::shared_cluster().url())
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
    let mut a = args.to_vec();
    a.push("--json");
    let out = pglock(&a, None).await;
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
    assert!(
        out.stdout
            .lines()
            .skip(1)
            .all(|l| l.starts_with(&holder_pid.to_string())),
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
    assert!(
        lines[i + 1].starts_with(&format!("  {waiter_pid} [cli-waiter]")),
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
    let out = pglock(&["blocking", "--terminate"], Some("n\n")).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("(y/[n])") && out.stdout.contains("Aborting!"),
        "{}",
        out.stdout
    );
    assert!(!is_gone(&obs, holder_pid).await);

    // Nothing selected.
    let out = pglock(&["999999", "--terminate", "--yes"], None).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("No queries to terminate."),
        "{}",
        out.stdout
    );

    // --yes --terminate on `blocking` kills exactly the blocker.
    let out = pglock(
        &["blocking", "--terminate", "--yes", &waiter_pid.to_string()],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Terminated 1 queries"),
        "{}",
        out.stdout
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
