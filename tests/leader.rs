//! Leader election and fencing terms, observed from the server (`pg_locks`,
//! `pg_stat_activity`, pglock's `terms` table) and, across processes, through a
//! marker file outside PostgreSQL.
//!
//! `failovers` runs `PGLOCK_FAILOVERS` failovers (default 6) of a fleet of
//! three `leader-worker` processes, alternating SIGKILL of the leader's process
//! and termination of its backend, and prints the failover times; BENCHMARKS.md
//! and RELIABILITY.md quote a run with `PGLOCK_FAILOVERS=60`.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pglock_runtime::{advisory, leader, Change, Revocation};
use pglock_tests::{
    backend_pid, holders, is_gone, observer, other, setup_owned, terminate, unique_key, url,
    wait_for_holder, wait_for_waiter, within,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// A unique election name for one test.
fn unique_name(what: &str) -> String {
    format!("test::{what}::{}", unique_key().unsigned_abs())
}

async fn next_change(changes: &mut pglock_runtime::Changes) -> Change {
    within(20, "a change of role", changes.next())
        .await
        .expect("the candidate is still in the election")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_resign_hands_over_and_terms_increase() {
    setup_owned();
    let obs = observer().await;
    let name = unique_name("resign");
    let a = leader(name.clone()).join().unwrap();
    let term_a = within(20, "a elected", a.elected()).await.unwrap();
    let b = leader(name.clone()).join().unwrap();
    let mut b_changes = b.changes();
    // b waits inside the server: a lock request not granted, behind a's.
    wait_for_waiter(&obs, a.key()).await;
    assert!(holders(&obs, a.key()).await.first().copied().is_some());
    assert!(a.is_leader() && !b.is_leader());
    assert_eq!(a.term(), Some(term_a));
    let shown = a.current_leader().await.unwrap().expect("a leads");
    assert_eq!(shown.term, term_a);
    assert_eq!(
        Some(shown.backend_pid.unwrap()),
        holders(&obs, a.key()).await.first().copied()
    );
    assert_eq!(shown.client_pid, Some(std::process::id() as i32));

    // The views name the leader's lock after the election, in another process too
    // (the name is recorded in pglock's schema).
    let shown = pglock_runtime::inspect()
        .locks(&pglock_runtime::LockFilter::new().key(a.key()))
        .await
        .unwrap();
    assert!(
        shown
            .iter()
            .any(|l| l.granted && l.name.as_deref() == Some(name.as_str())),
        "{shown:?}"
    );

    let mut a_changes = a.changes();
    a.resign().await.unwrap();
    assert!(!a.is_leader());
    assert_eq!(
        next_change(&mut a_changes).await,
        Change::Revoked {
            term: term_a,
            reason: Revocation::Resigned
        }
    );
    let Change::Elected { term: term_b } = next_change(&mut b_changes).await else {
        panic!("b is elected next");
    };
    assert!(
        term_b > term_a,
        "terms strictly increase: {term_a} then {term_b}"
    );
    assert!(b.is_leader() && !a.is_leader());
    let shown = b.current_leader().await.unwrap().expect("b leads");
    assert_eq!(shown.term, term_b);
    assert_eq!(
        Some(shown.backend_pid.unwrap()),
        holders(&obs, b.key()).await.first().copied()
    );
    // Anyone can read it: the inspection API and the CLI's source.
    let listed = pglock_runtime::terms()
        .name(name.clone())
        .current()
        .await
        .unwrap();
    assert_eq!(listed.map(|t| t.term), Some(term_b));

    b.leave().await;
    assert!(!b.is_leader());
    let Change::Elected { term: term_a2 } = next_change(&mut a_changes).await else {
        panic!("a is elected again once b leaves");
    };
    assert!(term_a2 > term_b);
    a.leave().await;
    within(10, "the lock is free once both left", async {
        while holders(&obs, a.key()).await.first().copied().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(a.elected().await.unwrap_err().kind() == pglock_runtime::ErrorKind::Usage);
}

/// Resolves with the next change and when it arrived.
fn stamped(mut changes: pglock_runtime::Changes) -> tokio::task::JoinHandle<(Change, Instant)> {
    tokio::spawn(async move {
        let change = next_change(&mut changes).await;
        (change, Instant::now())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_leader_is_revoked_and_its_work_dropped_before_the_next_is_announced() {
    setup_owned();
    let obs = observer().await;
    let name = unique_name("terminated");
    let a = leader(name.clone()).join().unwrap();
    let term_a = within(20, "a elected", a.elected()).await.unwrap();
    // a's work, dropped when a loses the leadership: it reports when.
    let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let work = {
        let a = a.clone();
        tokio::spawn(async move {
            a.run_while_leader(move |term| {
                let (started_tx, dropped_tx) = (started_tx.clone(), dropped_tx.clone());
                async move {
                    struct OnDrop(mpsc::UnboundedSender<(u64, Instant)>, u64);
                    impl Drop for OnDrop {
                        fn drop(&mut self) {
                            self.0.send((self.1, Instant::now())).ok();
                        }
                    }
                    let _on_drop = OnDrop(dropped_tx, term);
                    started_tx.send(term).ok();
                    std::future::pending::<()>().await
                }
            })
            .await
        })
    };
    assert_eq!(
        within(10, "a's work starts", started_rx.recv()).await,
        Some(term_a)
    );
    let b = leader(name.clone()).join().unwrap();
    wait_for_waiter(&obs, a.key()).await;
    let a_change = stamped(a.changes());
    let b_change = stamped(b.changes());
    let pid_a = holders(&obs, a.key())
        .await
        .first()
        .copied()
        .expect("a holds the lock");
    terminate(&obs, pid_a).await;

    let (revoked, revoked_at) = a_change.await.unwrap();
    assert_eq!(
        revoked,
        Change::Revoked {
            term: term_a,
            reason: Revocation::SessionEnded
        }
    );
    let (elected, elected_at) = b_change.await.unwrap();
    let Change::Elected { term: term_b } = elected else {
        panic!("b is elected: {elected:?}");
    };
    assert!(term_b > term_a);
    let (dropped_term, dropped_at) = within(5, "a's work dropped", dropped_rx.recv())
        .await
        .expect("dropped");
    assert_eq!(dropped_term, term_a);
    // Seen from outside, the leaderships did not overlap: a's work was gone,
    // and a knew it was no leader, before b announced itself.
    assert!(dropped_at < elected_at && revoked_at < elected_at);
    assert!(!a.is_leader() && b.is_leader());
    assert_ne!(holders(&obs, b.key()).await.first().copied(), Some(pid_a));

    // a is a candidate again by itself: it leads once b leaves, and its work
    // runs again with the new term.
    b.leave().await;
    let again = within(20, "a's work starts again", started_rx.recv())
        .await
        .unwrap();
    assert!(again > term_b);
    assert_eq!(a.term(), Some(again));
    a.leave().await;
    assert!(work.await.unwrap().unwrap_err().kind() == pglock_runtime::ErrorKind::Usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_candidate_renews_its_wait_and_holds_one_connection() {
    setup_owned();
    let obs = observer().await;
    let name = unique_name("renew");
    let a = leader(name.clone()).join().unwrap();
    within(20, "a elected", a.elected()).await.unwrap();
    let b = leader(name.clone())
        .renew_wait(Duration::from_millis(200))
        .join()
        .unwrap();
    // b's backend: the one waiting for the key.
    let pid_b = wait_for_waiter(&obs, a.key()).await;
    let first = query_start(&obs, pid_b).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = query_start(&obs, pid_b).await;
    // The wait statement was issued again (a fresh snapshot each time), on the
    // same session: one connection per candidate.
    assert!(
        later > first,
        "the wait was renewed: {first:?} then {later:?}"
    );
    assert!(!is_gone(&obs, pid_b).await);
    assert!(!b.is_leader());
    a.leave().await;
    within(20, "b elected", b.elected()).await.unwrap();
    assert_eq!(holders(&obs, b.key()).await.first().copied(), Some(pid_b));
    b.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_increase_and_check_term_rejects_a_stale_holder() {
    setup_owned();
    let obs = observer().await;
    let name = unique_name("fenced");
    // Not asked: no token, no term recorded.
    let plain = advisory(name.clone()).acquire().await.unwrap();
    assert_eq!(plain.fencing_token(), None);
    plain.release().await.unwrap();

    let first = advisory(name.clone()).fenced().acquire().await.unwrap();
    let t1 = first.fencing_token().expect("asked for");
    let check = |token: u64| {
        let (obs, name) = (&obs, name.clone());
        async move {
            obs.query_one(
                "SELECT pglock.check_term($1, $2)",
                &[&name, &(token as i64)],
            )
            .await
        }
    };
    assert_eq!(check(t1).await.unwrap().get::<_, i64>(0), t1 as i64);
    // The first holder's session is cut; another process takes the lock.
    let pid = backend_pid_of(&first).await;
    terminate(&obs, pid).await;
    let second = within(
        20,
        "the second holder",
        advisory(name.clone()).fenced().using(other()).acquire(),
    )
    .await
    .unwrap();
    let t2 = second.fencing_token().unwrap();
    assert!(t2 > t1, "tokens strictly increase: {t1} then {t2}");
    // The stale holder's write, guarded by its token, is refused by the server.
    let stale = check(t1).await.unwrap_err();
    assert_eq!(stale.code().map(|c| c.code()), Some("PGF01"));
    assert!(
        stale.to_string().contains("not the current term")
            || format!("{stale:?}").contains("not the current term")
    );
    assert_eq!(check(t2).await.unwrap().get::<_, i64>(0), t2 as i64);
    drop(first);
    second.release().await.unwrap();
    // Shared holders hold together: no token for them.
    assert!(
        advisory(name.clone())
            .fenced()
            .shared()
            .acquire()
            .await
            .unwrap_err()
            .kind()
            == pglock_runtime::ErrorKind::Usage
    );
    let _ = url();
}

async fn query_start(obs: &tokio_postgres::Client, pid: i32) -> SystemTime {
    obs.query_one(
        "SELECT query_start FROM pg_stat_activity WHERE pid = $1",
        &[&pid],
    )
    .await
    .unwrap()
    .get(0)
}

async fn backend_pid_of(guard: &pglock_runtime::AdvisoryGuard<'_>) -> i32 {
    backend_pid(guard.client()).await
}

/// A worker process of the fleet, and the lines it prints.
struct Worker {
    id: String,
    child: tokio::process::Child,
}

/// One line of a worker: `<event> <id> <term> <unix ms>`.
#[derive(Debug, Clone)]
struct Event {
    kind: String,
    id: String,
    term: u64,
    at_ms: u128,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn spawn_worker(
    id: &str,
    election: &str,
    marker: &std::path::Path,
    events: &mpsc::UnboundedSender<Event>,
) -> Worker {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_leader-worker"))
        .args([url(), election, marker.to_str().unwrap(), id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("leader-worker starts");
    let stdout = child.stdout.take().unwrap();
    let events = events.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [kind, id, term, at] = f.as_slice() {
                events
                    .send(Event {
                        kind: (*kind).to_owned(),
                        id: (*id).to_owned(),
                        term: term.parse().unwrap(),
                        at_ms: at.parse().unwrap(),
                    })
                    .ok();
            }
        }
    });
    Worker {
        id: id.to_owned(),
        child,
    }
}

/// The next event of `kind`, keeping every event seen in `log`.
async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    log: &mut Vec<Event>,
    kind: &str,
) -> Event {
    within(30, kind, async {
        loop {
            let e = rx.recv().await.expect("workers running");
            log.push(e.clone());
            if e.kind == kind {
                return e;
            }
        }
    })
    .await
}

fn median_and_max(mut v: Vec<u128>) -> (u128, u128) {
    v.sort_unstable();
    (v[v.len() / 2], *v.last().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers() {
    setup_owned();
    let rounds: usize = std::env::var("PGLOCK_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let obs = observer().await;
    let election = unique_name("fleet");
    let key = leader(election.clone()).key();
    let dir = std::env::temp_dir().join(format!("pglock-leader-{}", unique_key().unsigned_abs()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("leader");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut log = Vec::new();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut serial = 0;
    for _ in 0..3 {
        let id = format!("w{serial}");
        serial += 1;
        workers.insert(id.clone(), spawn_worker(&id, &election, &marker, &tx));
        next_event(&mut rx, &mut log, "joined").await;
    }
    let mut leader_now = next_event(&mut rx, &mut log, "elected").await;
    let (mut by_kill, mut by_terminate) = (Vec::new(), Vec::new());
    let mut terms = vec![leader_now.term];
    for round in 0..rounds {
        // Every candidate waits on the server: one connection each.
        within(20, "all three candidates connected", async {
            loop {
                let n: i64 = obs
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'leader-worker-%'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if n == 3 {
                    break;
                }
                assert!(n <= 3, "one connection per candidate, saw {n} for 3");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let pid = wait_for_holder(&obs, key).await;
        let kill = round % 2 == 0;
        let t0 = now_ms();
        if kill {
            let mut w = workers.remove(&leader_now.id).unwrap();
            w.child.start_kill().unwrap();
            w.child.wait().await.unwrap();
            // A killed process cannot remove its marker: the test does, once
            // the process is gone (only if it is still the killed one's).
            let mine = format!("{} {}", leader_now.id, leader_now.term);
            if std::fs::read_to_string(&marker).is_ok_and(|c| c == mine) {
                std::fs::remove_file(&marker).ok();
            }
        } else {
            terminate(&obs, pid).await;
        }
        let next = next_event(&mut rx, &mut log, "elected").await;
        let took = next.at_ms.saturating_sub(t0);
        if kill {
            by_kill.push(took);
            let id = format!("w{serial}");
            serial += 1;
            workers.insert(id.clone(), spawn_worker(&id, &election, &marker, &tx));
            next_event(&mut rx, &mut log, "joined").await;
        } else {
            by_terminate.push(took);
            assert_ne!(
                next.id, leader_now.id,
                "the next candidate in line is elected"
            );
        }
        assert!(
            next.term > *terms.last().unwrap(),
            "terms strictly increase: {terms:?} then {}",
            next.term
        );
        terms.push(next.term);
        leader_now = next;
    }
    for w in workers.values_mut() {
        drop(w.child.stdin.take());
    }
    for (_, mut w) in workers {
        within(20, "a worker leaves", w.child.wait()).await.unwrap();
        let _ = &w.id;
    }
    while let Ok(e) = rx.try_recv() {
        log.push(e);
    }
    let overlaps: Vec<&Event> = log.iter().filter(|e| e.kind == "overlap").collect();
    assert!(overlaps.is_empty(), "two leaders at once: {overlaps:?}");
    // Every elected term, in the order the workers announced them, increases.
    let mut elected: Vec<&Event> = log.iter().filter(|e| e.kind == "elected").collect();
    elected.sort_by_key(|e| e.at_ms);
    assert!(
        elected.windows(2).all(|w| w[0].term < w[1].term),
        "{elected:?}"
    );
    let (km, kx) = median_and_max(by_kill.clone());
    println!(
        "failover after SIGKILL of the leader's process: median {km} ms, worst {kx} ms over {}",
        by_kill.len()
    );
    if !by_terminate.is_empty() {
        let (tm, tx_) = median_and_max(by_terminate.clone());
        println!("failover after termination of the leader's backend: median {tm} ms, worst {tx_} ms over {}", by_terminate.len());
    }
    println!(
        "terms {terms:?}; no overlap over {} leaderships",
        elected.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A leader cut off by a silent partition (no FIN, sockets open): it gives up
/// when its liveness check goes unanswered for the answer deadline (3 s), and
/// the server, whose idle timer on the leader's session is twice that, ends
/// the session only afterwards — then the next candidate is elected. Two
/// leaderships never overlap, even without the server being able to tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_gives_up_before_the_server_elects_the_next() {
    setup_owned();
    let cluster = pglock_testkit::shared_cluster();
    let proxy = pglock_testkit::PartitionProxy::start(cluster.port()).expect("proxy starts");
    let config = pglock_runtime::Config::from_url(&proxy.url_for(&cluster.url()))
        .unwrap()
        .connect_timeout(Duration::from_secs(1));
    assert_eq!(config.answer_deadline(), Duration::from_secs(3));
    pglock_runtime::register("leader-partitioned", config).unwrap();
    let name = unique_name("partition");
    let a = leader(name.clone())
        .using("leader-partitioned")
        .join()
        .unwrap();
    let term_a = within(20, "a elected", a.elected()).await.unwrap();
    let b = leader(name.clone()).join().unwrap();
    let obs = observer().await;
    wait_for_waiter(&obs, a.key()).await;
    let a_change = stamped(a.changes());
    let b_change = stamped(b.changes());
    proxy.pause();
    let cut = Instant::now();
    let (revoked, revoked_at) = a_change.await.unwrap();
    assert_eq!(
        revoked,
        Change::Revoked {
            term: term_a,
            reason: Revocation::NoAnswer(Duration::from_secs(3))
        }
    );
    let (elected, elected_at) = b_change.await.unwrap();
    let Change::Elected { term: term_b } = elected else {
        panic!("b is elected: {elected:?}");
    };
    assert!(term_b > term_a);
    assert!(revoked_at < elected_at, "a gave up before b was announced");
    let (gave_up, took_over) = (revoked_at - cut, elected_at - cut);
    println!("partitioned leader gave up after {gave_up:?}; next elected after {took_over:?}");
    assert!(
        gave_up >= Duration::from_secs(3),
        "not before the deadline: {gave_up:?}"
    );
    b.leave().await;
    a.leave().await;
}

/// The same from synchronous code: plain threads, no runtime of the caller's.
#[test]
fn the_blocking_api_elects_resigns_and_leaves() {
    setup_owned();
    let name = unique_name("blocking");
    let a = leader(name.clone()).join().unwrap();
    let term = a
        .elected_blocking(Some(Duration::from_secs(20)))
        .unwrap()
        .expect("elected within 20 s");
    let b = {
        let name = name.clone();
        std::thread::spawn(move || leader(name).join().unwrap())
            .join()
            .unwrap()
    };
    assert_eq!(
        b.elected_blocking(Some(Duration::from_millis(300)))
            .unwrap(),
        None,
        "b stands by while a leads"
    );
    let current = a.current_leader_blocking().unwrap().expect("a leads");
    assert_eq!(current.term, term);
    let mut changes = b.changes();
    a.resign_blocking().unwrap();
    let Some(Change::Elected { term: term_b }) = changes.next_blocking() else {
        panic!("b is elected when a resigns");
    };
    assert!(term_b > term);
    assert!(b.is_leader() && !a.is_leader());
    b.leave_blocking();
    assert_eq!(
        changes.next_blocking(),
        Some(Change::Revoked {
            term: term_b,
            reason: Revocation::Left
        })
    );
    assert_eq!(changes.next_blocking(), None, "b left: no more changes");
    a.leave_blocking();
}

#[pglock_runtime::advisory_lock(key = "test::leader::fenced_attribute", fenced)]
async fn fenced_job() -> Result<Option<u64>, pglock_runtime::Error> {
    Ok(pglock_runtime::fencing_token())
}

#[pglock_runtime::advisory_lock(key = "test::leader::fenced_sync", fenced, xact)]
fn fenced_sync_job() -> Result<Option<u64>, pglock_runtime::Error> {
    Ok(pglock_runtime::fencing_token())
}

/// `#[advisory_lock(fenced)]` and `AdvisoryLock::fenced().run(…)`: the body reads
/// its token with `fencing_token()`, each call's strictly greater than the last,
/// and the same as the server records; outside a fenced scope there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_scopes_give_their_body_the_token() {
    setup_owned();
    assert_eq!(pglock_runtime::fencing_token(), None);
    let first = fenced_job().await.unwrap().expect("a token");
    let second = fenced_job().await.unwrap().expect("a token");
    assert!(second > first);
    let recorded = pglock_runtime::terms()
        .name("test::leader::fenced_attribute")
        .list()
        .await
        .unwrap();
    assert_eq!(recorded.first().map(|t| t.term), Some(second));
    let name = unique_name("fenced_run");
    let (outer, inner) = advisory(name.clone())
        .fenced()
        .run(async {
            let outer = pglock_runtime::fencing_token();
            // A scope without `fenced` inside does not hide the outer token.
            let inner = advisory(unique_key())
                .run(async { pglock_runtime::fencing_token() })
                .await
                .unwrap();
            (outer, inner)
        })
        .await
        .unwrap();
    assert!(outer.is_some());
    assert_eq!(inner, outer);
    assert_eq!(
        advisory(unique_key())
            .run(async { pglock_runtime::fencing_token() })
            .await
            .unwrap(),
        None
    );
    let sync = tokio::task::spawn_blocking(|| (fenced_sync_job(), fenced_sync_job()))
        .await
        .unwrap();
    let (a, b) = (sync.0.unwrap().unwrap(), sync.1.unwrap().unwrap());
    assert!(b > a, "sync fenced calls: {a} then {b}");
    assert!(
        advisory(name)
            .fenced()
            .shared()
            .run(async {})
            .await
            .unwrap_err()
            .kind()
            == pglock_runtime::ErrorKind::Usage
    );
}

/// A role whose `statement_timeout` is shorter than a candidate's wait: the
/// candidate's session switches it off (the wait's length is the candidate's
/// own renewal), so it keeps waiting on the same backend instead of failing
/// and reconnecting every 300 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_statement_timeout_does_not_cut_a_candidates_wait() {
    setup_owned();
    let obs = observer().await;
    obs.batch_execute(
        "DO $$ BEGIN CREATE ROLE pglock_short_statements LOGIN SUPERUSER; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         ALTER ROLE pglock_short_statements SET statement_timeout = '300ms'",
    )
    .await
    .unwrap();
    let mut pg: tokio_postgres::Config = url().parse().unwrap();
    pg.user("pglock_short_statements");
    pglock_runtime::register("leader-short-statements", pglock_runtime::Config::new(pg)).unwrap();
    let name = unique_name("statement_timeout");
    let a = leader(name.clone()).join().unwrap();
    within(20, "a elected", a.elected()).await.unwrap();
    let b = leader(name.clone())
        .using("leader-short-statements")
        .join()
        .unwrap();
    let pid_b = wait_for_waiter(&obs, a.key()).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        wait_for_waiter(&obs, a.key()).await,
        pid_b,
        "still the same wait"
    );
    a.leave().await;
    within(20, "b elected", b.elected()).await.unwrap();
    b.leave().await;
}
