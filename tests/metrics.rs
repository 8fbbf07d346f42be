//! Issue 14.5: pglock's metrics through the `metrics` facade, read with a
//! recording backend while locks are taken, skipped, timed out and lost, and
//! while a watchdog acts.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use pglock_runtime::{advisory, register, Config, Prioritize};
use pglock_tests::*;

/// One metric in a snapshot: name, labels, value.
type Metric = (String, Vec<(String, String)>, DebugValue);

/// Everything recorded since the last snapshot (counters and gauges count
/// from zero again after each: the debugging recorder swaps them out).
fn take(s: &Snapshotter) -> Vec<Metric> {
    s.snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| {
            let key = k.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, v)
        })
        .collect()
}

/// The value of `name` whose labels include `labels`.
fn find<'a>(snap: &'a [Metric], name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    snap.iter()
        .find(|(n, ls, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
}

fn counter(snap: &[Metric], name: &str, labels: &[(&str, &str)]) -> u64 {
    match find(snap, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?} in {snap:#?}"),
    }
}

fn gauge(snap: &[Metric], name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(snap, name, labels) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name} {labels:?}: {other:?} in {snap:#?}"),
    }
}

fn samples(snap: &[Metric], name: &str, labels: &[(&str, &str)]) -> usize {
    match find(snap, name, labels) {
        Some(DebugValue::Histogram(v)) => v.len(),
        other => panic!("{name} {labels:?}: {other:?} in {snap:#?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_taken_skipped_timed_out_lost_and_a_watchdog_are_counted() {
    setup_owned();
    let recorder = DebuggingRecorder::new();
    let s = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let a = "metrics-a";
    register(
        a,
        Config::from_url(url())
            .unwrap()
            .heartbeat(Some(Duration::from_millis(100))),
    )
    .unwrap();
    let obs = observer().await;

    // A named lock whose body runs.
    advisory("metrics::job")
        .using(a)
        .run(async {})
        .await
        .unwrap();
    let snap = take(&s);
    let job = [("alias", a), ("lock", "metrics::job")];
    let ran = [("alias", a), ("lock", "metrics::job"), ("outcome", "ran")];
    assert_eq!(counter(&snap, "pglock_acquisitions_total", &ran), 1);
    assert_eq!(samples(&snap, "pglock_wait_seconds", &job), 1);
    assert_eq!(samples(&snap, "pglock_hold_seconds", &job), 1);
    assert!(
        gauge(
            &snap,
            "pglock_pool_connections",
            &[("alias", a), ("state", "open")]
        ) >= 1.0
    );

    // A guard, then a busy skip and a timed-out wait of the same key.
    let key = unique_key();
    let k = key.to_string();
    let lock = [("alias", a), ("lock", k.as_str())];
    let guard = advisory(key).using(a).acquire().await.unwrap();
    let busy = advisory(key).no_wait().using(other()).run(async {}).await;
    assert!(busy.unwrap_err().is_busy());
    let timed_out = advisory(key)
        .timeout(Duration::from_millis(100))
        .using(other())
        .acquire()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());
    let snap = take(&s);
    let o = other();
    assert_eq!(
        counter(
            &snap,
            "pglock_acquisitions_total",
            &[("alias", a), ("lock", &k), ("outcome", "acquired")]
        ),
        1
    );
    assert_eq!(gauge(&snap, "pglock_locks_held", &lock), 1.0);
    assert_eq!(
        counter(
            &snap,
            "pglock_acquisitions_total",
            &[("alias", o), ("lock", &k), ("outcome", "busy")]
        ),
        1
    );
    assert_eq!(
        counter(
            &snap,
            "pglock_acquisitions_total",
            &[("alias", o), ("lock", &k), ("outcome", "timed_out")]
        ),
        1
    );
    guard.release().await.unwrap();
    let snap = take(&s);
    assert_eq!(
        gauge(&snap, "pglock_locks_held", &lock),
        -1.0,
        "released: one fewer held"
    );
    assert_eq!(samples(&snap, "pglock_hold_seconds", &lock), 1);

    // A lock lost while held (its backend terminated).
    let lost_key = unique_key();
    let lk = lost_key.to_string();
    let guard = advisory(lost_key).using(a).acquire().await.unwrap();
    let pid = holders(&obs, pglock_runtime::LockKey::Int(lost_key)).await[0];
    terminate(&obs, pid).await;
    within(10, "lost", guard.lost()).await;
    let snap = take(&s);
    assert_eq!(
        counter(
            &snap,
            "pglock_locks_lost_total",
            &[("alias", a), ("lock", &lk)]
        ),
        1
    );
    drop(guard);

    // A watchdog terminating a blocker.
    let wk = unique_key();
    let (_blocker, _) = advisory_holder(&app_url(), "metrics-blocker", wk).await;
    let done = within(
        20,
        "prioritized",
        Prioritize::new()
            .interval(Duration::from_millis(100))
            .using(a)
            .run(async { advisory(wk).using(a).acquire().await.map(drop) }),
    )
    .await
    .unwrap();
    done.output.unwrap();
    let snap = take(&s);
    assert_eq!(
        counter(
            &snap,
            "pglock_watchdog_actions_total",
            &[("alias", a), ("action", "terminated")]
        ),
        1
    );

    // A leadership: elected, then revoked by resigning.
    let election = format!("metrics::leader::{}", unique_key().unsigned_abs());
    let candidate = pglock_runtime::leader(election.clone())
        .using(a)
        .join()
        .unwrap();
    within(20, "elected", candidate.elected()).await.unwrap();
    let snap = take(&s);
    let labels = [("alias", a), ("election", election.as_str())];
    assert_eq!(gauge(&snap, "pglock_leader", &labels), 1.0);
    assert_eq!(
        counter(
            &snap,
            "pglock_leadership_changes_total",
            &[("alias", a), ("election", &election), ("change", "elected")]
        ),
        1
    );
    candidate.leave().await;
    let snap = take(&s);
    assert_eq!(gauge(&snap, "pglock_leader", &labels), 0.0);
    assert_eq!(
        counter(
            &snap,
            "pglock_leadership_changes_total",
            &[("alias", a), ("election", &election), ("change", "revoked")]
        ),
        1
    );
}
