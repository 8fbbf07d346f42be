//! Introspection over `pg_locks` ⨝ `pg_stat_activity`: every lock type, filters,
//! blocked → blocking pairs, the blocking tree, holder look-ups, cancel/terminate.

use std::time::Duration;

use pglock_runtime::{advisory, inspect, LockFilter, LockKey};
use pglock_tests::*;

#[tokio::test]
async fn lists_every_lock_type_with_its_backend() {
    setup_owned();
    let obs = observer().await;
    let t = fresh_table(&obs, "insp_types").await;
    let key = unique_key();
    let s = session(url(), "lister").await;
    let s_pid = backend_pid(&s).await;
    s.batch_execute(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({key}); UPDATE {t} SET x = 2; LOCK TABLE {t} IN SHARE MODE"
    ))
    .await
    .unwrap();
    let locks = inspect()
        .locks(&LockFilter::new().pids([s_pid]))
        .await
        .unwrap();
    let types: std::collections::BTreeSet<&str> =
        locks.iter().map(|l| l.locktype.as_str()).collect();
    for expected in ["advisory", "relation", "transactionid", "virtualxid"] {
        assert!(
            types.contains(expected),
            "{expected} missing from {types:?}"
        );
    }
    let adv = locks.iter().find(|l| l.locktype == "advisory").unwrap();
    assert_eq!(adv.key, Some(LockKey::Int(key)));
    assert!(adv.granted);
    assert_eq!(adv.backend.application_name, "lister");
    assert_eq!(adv.backend.state.as_deref(), Some("idle in transaction"));
    assert!(adv.backend.xact_start.is_some());
    let rel = locks
        .iter()
        .find(|l| l.locktype == "relation" && l.mode == "ShareLock")
        .unwrap();
    assert_eq!(
        rel.relation.as_deref(),
        Some(format!("public.{t}").as_str())
    );
    assert_eq!(rel.relation_kind.as_deref(), Some("r"));
    assert!(locks
        .iter()
        .any(|l| l.locktype == "transactionid" && l.transaction.is_some()));

    // Filters.
    let by_rel = inspect()
        .locks(&LockFilter::new().relation(format!("public.{t}")))
        .await
        .unwrap();
    assert!(
        !by_rel.is_empty()
            && by_rel
                .iter()
                .all(|l| l.pid() == s_pid && l.relation.is_some())
    );
    let by_key = inspect()
        .locks(&LockFilter::new().key(LockKey::Int(key)))
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1);
    let by_app = inspect()
        .locks(&LockFilter::new().application_name("lister"))
        .await
        .unwrap();
    assert_eq!(by_app.len(), locks.len());
    let by_type = inspect()
        .locks(&LockFilter::new().pids([s_pid]).locktype("advisory"))
        .await
        .unwrap();
    assert_eq!(by_type.len(), 1);
    let limited = inspect()
        .locks(&LockFilter::new().pids([s_pid]).limit(2))
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = inspect()
        .locks(
            &LockFilter::new()
                .pids([s_pid])
                .min_duration(Duration::from_millis(250)),
        )
        .await
        .unwrap();
    assert_eq!(old.len(), locks.len(), "all held for at least 250 ms");
    let young = inspect()
        .locks(
            &LockFilter::new()
                .pids([s_pid])
                .min_duration(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(young.is_empty());
    assert!(inspect()
        .locks(&LockFilter::new().pids([s_pid]).granted(false))
        .await
        .unwrap()
        .is_empty());
    s.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn blocking_pairs_and_waiting_first() {
    setup_owned();
    let obs = observer().await;
    let t = fresh_table(&obs, "insp_pairs").await;
    let holder = session(url(), "holder").await;
    let holder_pid = backend_pid(&holder).await;
    holder
        .batch_execute(&format!("BEGIN; LOCK TABLE {t} IN ACCESS SHARE MODE"))
        .await
        .unwrap();
    let waiter = session(url(), "waiter").await;
    let waiter_pid = backend_pid(&waiter).await;
    let w = tokio::spawn({
        let t = t.clone();
        async move {
            waiter
                .batch_execute(&format!("BEGIN; LOCK TABLE {t}; ROLLBACK"))
                .await
        }
    });
    wait_until_blocked(&obs, waiter_pid).await;

    let waiting = inspect()
        .locks(&LockFilter::new().pids([holder_pid, waiter_pid]))
        .await
        .unwrap();
    assert!(
        !waiting[0].granted,
        "waiting locks come first: {:?}",
        waiting[0]
    );
    assert_eq!(waiting[0].pid(), waiter_pid);
    assert!(waiting[0].wait_start.is_some() && waiting[0].wait_duration().is_some());

    let pairs = inspect().blocking().await.unwrap();
    let pair = pairs
        .iter()
        .find(|p| p.blocked.pid == waiter_pid)
        .expect("pair listed");
    assert_eq!(pair.blocking.pid, holder_pid);
    assert_eq!(pair.blocking.application_name, "holder");
    let w_lock = pair.waiting_for.as_ref().expect("the awaited lock");
    assert_eq!(w_lock.mode, "AccessExclusiveLock");
    assert_eq!(
        w_lock.relation.as_deref(),
        Some(format!("public.{t}").as_str())
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    within(10, "waiter proceeds", w).await.unwrap().unwrap();
}

/// A chain of three and an advisory wait behind a table lock, as a tree.
#[tokio::test]
async fn blocking_tree_of_a_chain() {
    setup_owned();
    let obs = observer().await;
    let (k1, k2) = (unique_key(), unique_key());
    let s1 = session(url(), "root").await;
    let s1_pid = backend_pid(&s1).await;
    s1.execute("SELECT pg_advisory_lock($1)", &[&k1])
        .await
        .unwrap();
    let s2 = session(url(), "middle").await;
    let s2_pid = backend_pid(&s2).await;
    s2.execute("SELECT pg_advisory_lock($1)", &[&k2])
        .await
        .unwrap();
    let t2 = tokio::spawn(async move {
        s2.execute("SELECT pg_advisory_lock($1)", &[&k1])
            .await
            .map(|_| s2)
    });
    wait_until_blocked(&obs, s2_pid).await;
    let s3 = session(url(), "leaf").await;
    let s3_pid = backend_pid(&s3).await;
    let t3 = tokio::spawn(async move {
        s3.execute("SELECT pg_advisory_lock($1)", &[&k2])
            .await
            .map(|_| s3)
    });
    wait_until_blocked(&obs, s3_pid).await;

    let tree = inspect().tree().await.unwrap();
    let root = tree
        .iter()
        .find(|n| n.backend.pid == s1_pid)
        .expect("root listed");
    assert!(root.waiting_for.is_none());
    assert_eq!(root.blocked.len(), 1);
    let mid = &root.blocked[0];
    assert_eq!(mid.backend.pid, s2_pid);
    assert_eq!(
        mid.waiting_for.as_ref().and_then(|l| l.key),
        Some(LockKey::Int(k1))
    );
    assert_eq!(
        mid.blocked
            .iter()
            .map(|n| n.backend.pid)
            .collect::<Vec<_>>(),
        vec![s3_pid]
    );
    assert!(
        tree.iter()
            .all(|n| n.backend.pid != s2_pid && n.backend.pid != s3_pid),
        "not roots"
    );

    // Terminating the root lets the chain drain.
    assert_eq!(inspect().terminate(&[s1_pid]).await.unwrap(), vec![s1_pid]);
    let s2 = within(10, "middle proceeds", t2).await.unwrap().unwrap();
    s2.execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    within(10, "leaf proceeds", t3).await.unwrap().unwrap();
}

#[tokio::test]
async fn holder_lookups() {
    setup_owned();
    let key = unique_key();
    let k = LockKey::Int(key);
    assert!(!inspect().is_held(k).await.unwrap());
    let g = advisory(key).acquire().await.unwrap();
    let mine = g.connection().unwrap().backend_pid();
    assert!(inspect().is_held(k).await.unwrap());
    assert_eq!(
        inspect()
            .holders(k)
            .await
            .unwrap()
            .iter()
            .map(|h| h.pid)
            .collect::<Vec<_>>(),
        vec![mine]
    );
    let all = inspect().advisory_locks().await.unwrap();
    assert!(all.iter().any(|l| l.key == Some(k) && l.pid() == mine));
    assert!(all.iter().all(|l| l.locktype == "advisory" && l.granted));
    g.release().await.unwrap();
    assert!(!inspect().is_held(k).await.unwrap());
}

#[tokio::test]
async fn cancel_and_terminate_report_what_was_signalled() {
    setup_owned();
    let obs = observer().await;
    let s = session(url(), "sleeper").await;
    let s_pid = backend_pid(&s).await;
    let sleeping = tokio::spawn(async move {
        let r = s.batch_execute("SELECT pg_sleep(30)").await;
        (r, s)
    });
    for _ in 0..500 {
        if backend_state(&obs, s_pid).await.as_deref() == Some("active") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        inspect().cancel(&[s_pid, 999_999]).await.unwrap(),
        vec![s_pid]
    );
    let (r, s) = within(10, "cancelled", sleeping).await.unwrap();
    assert_eq!(
        pglock_runtime::Error::from(r.unwrap_err()).kind(),
        pglock_runtime::ErrorKind::Cancelled
    );
    assert_eq!(inspect().terminate(&[s_pid]).await.unwrap(), vec![s_pid]);
    assert_gone(&obs, s_pid).await;
    assert!(s.batch_execute("SELECT 1").await.is_err());
    assert!(inspect().terminate(&[]).await.unwrap().is_empty());
}
