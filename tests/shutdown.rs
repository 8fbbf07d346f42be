//! Issue 14.4: a SIGTERM to a process that holds a lock, waits for another
//! and runs a body under a third; `pglock_runtime::shutdown` cancels the wait,
//! gives the body its deadline, then closes everything: read from the server,
//! no session of the process and no lock of it are left, while the process
//! still runs.

use std::process::Stdio;
use std::time::Duration;

use pglock_tests::*;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

async fn line_starting(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    loop {
        let line = within(30, prefix, lines.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the worker ended before printing {prefix}"));
        if line.starts_with(prefix) {
            return line;
        }
    }
}

async fn worker_backends(obs: &tokio_postgres::Client) -> Vec<i32> {
    obs.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'shutdown-worker'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_shutdown_leave_no_session_and_no_lock() {
    setup_owned();
    let obs = observer().await;
    let (held, waited, body) = (unique_key(), unique_key(), unique_key());
    let (_holder, _) = advisory_holder(url(), "shutdown-test-holder", waited).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shutdown-worker"))
        .args([
            url(),
            &held.to_string(),
            &waited.to_string(),
            &body.to_string(),
            &format!("shutdown::leader::{body}"),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    line_starting(&mut lines, "ready").await;
    // The server's view: it holds two keys and waits for the third.
    let pids = within(10, "the worker's locks", async {
        loop {
            let held_by = holders(&obs, pglock_runtime::LockKey::Int(held)).await;
            let body_by = holders(&obs, pglock_runtime::LockKey::Int(body)).await;
            let waiting: i64 = obs
                .query_one(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                     WHERE NOT l.granted AND a.application_name = 'shutdown-worker'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if !held_by.is_empty() && !body_by.is_empty() && waiting == 1 {
                return worker_backends(&obs).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        pids.len() >= 4,
        "guard, waiter, body and candidate sessions: {pids:?}"
    );
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let waiter = line_starting(&mut lines, "waiter:").await;
    let after = line_starting(&mut lines, "after:").await;
    let leader = line_starting(&mut lines, "leader:").await;
    let elected = line_starting(&mut lines, "elected:").await;
    let report = line_starting(&mut lines, "report:").await;
    line_starting(&mut lines, "done").await;
    assert_eq!(
        waiter, "waiter: Some(ShuttingDown)",
        "the wait was cancelled"
    );
    assert_eq!(after, "after: Some(ShuttingDown)", "no new locks");
    assert!(
        leader.contains("Revoked") && leader.contains("ShuttingDown"),
        "the leadership ends with the shutdown: {leader}"
    );
    assert_eq!(
        elected, "elected: Some(ShuttingDown)",
        "and is not sought again"
    );
    assert!(report.contains("cancelled_waits: 1"), "{report}");
    assert!(report.contains("finished_in_time: false"), "{report}");
    // The process is still alive; the server has nothing of it.
    assert!(child.try_wait().unwrap().is_none(), "the worker still runs");
    for p in &pids {
        assert!(
            wait_until_gone(&obs, *p).await,
            "session {p} is gone: {report}"
        );
    }
    assert!(worker_backends(&obs).await.is_empty());
    for k in [held, body] {
        assert!(
            holders(&obs, pglock_runtime::LockKey::Int(k))
                .await
                .is_empty(),
            "lock {k} is released"
        );
    }
    child.kill().await.ok();
}
