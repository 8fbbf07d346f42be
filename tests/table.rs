//! Table locks: all eight modes, quoting, transactions, NOWAIT and bounded waits,
//! observed in `pg_locks`.

use std::time::{Duration, Instant};

use pglock_runtime::{connection, lock_timeout, table_lock, ErrorKind, Table, TableLockMode};
use pglock_tests::*;
use tokio_postgres::Client;

async fn relation_modes(obs: &Client, pid: i32, regclass: &str) -> Vec<String> {
    obs.query(
        "SELECT mode FROM pg_locks WHERE locktype = 'relation' AND granted AND pid = $1 \
         AND relation = to_regclass($2)::oid ORDER BY mode",
        &[&pid, &regclass],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn table(obs: &Client, prefix: &str) -> String {
    let name = format!("{prefix}_{}", unique_key().unsigned_abs());
    obs.batch_execute(&format!("CREATE TABLE {name} (x int)"))
        .await
        .unwrap();
    name
}

#[tokio::test]
async fn all_eight_modes() {
    setup();
    let obs = observer().await;
    let t = table(&obs, "modes").await;
    for mode in TableLockMode::ALL {
        let g = table_lock([t.as_str()]).mode(mode).acquire().await.unwrap();
        let pid = g.connection().backend_pid();
        assert_eq!(
            relation_modes(&obs, pid, &t).await,
            vec![mode.pg_locks_name().to_owned()],
            "{mode:?}"
        );
        g.commit().await.unwrap();
        assert!(
            relation_modes(&obs, pid, &t).await.is_empty(),
            "{mode:?} released by commit"
        );
    }
}

#[tokio::test]
async fn hostile_names_are_quoted_not_spliced() {
    setup();
    let obs = observer().await;
    // Short enough that the injection attempt below fits in 63 bytes.
    let salt = unique_key().unsigned_abs() % 1_000_000_000;
    let weird = format!("we\"ird; name {salt}");
    let schema = format!("my schema {salt}");
    let dotted = "t.x";
    obs.batch_execute(&format!(
        "CREATE TABLE \"we\"\"ird; name {salt}\" (x int); CREATE SCHEMA \"{schema}\"; \
         CREATE TABLE \"{schema}\".\"{dotted}\" (x int); CREATE TABLE victim_{salt} (x int)"
    ))
    .await
    .unwrap();
    let g = table_lock([
        Table::new(weird.clone()),
        Table::qualified(schema.clone(), dotted),
    ])
    .mode(TableLockMode::Exclusive)
    .acquire()
    .await
    .unwrap();
    let pid = g.connection().backend_pid();
    let weird_reg = format!("\"we\"\"ird; name {salt}\"");
    let dotted_reg = format!("\"{schema}\".\"{dotted}\"");
    assert_eq!(
        relation_modes(&obs, pid, &weird_reg).await,
        vec!["ExclusiveLock"]
    );
    assert_eq!(
        relation_modes(&obs, pid, &dotted_reg).await,
        vec!["ExclusiveLock"]
    );
    g.rollback().await.unwrap();

    // An injection attempt names a table that does not exist, and runs nothing else.
    let evil = format!("x\" IN ACCESS SHARE MODE; DROP TABLE victim_{salt}; --");
    let err = table_lock([Table::new(evil)]).acquire().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Database, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let still: Option<String> =
        query_value(&obs, &format!("SELECT to_regclass('victim_{salt}')::text")).await;
    assert_eq!(still.as_deref(), Some(format!("victim_{salt}").as_str()));

    for bad in [Table::new(""), Table::new("a\0b")] {
        let err = table_lock([bad]).acquire().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration);
    }
    let err = table_lock(Vec::<Table>::new()).acquire().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration);
}

#[tokio::test]
async fn busy_and_bounded_waits_name_the_holder() {
    setup();
    let obs = observer().await;
    let t = table(&obs, "busy").await;
    let holder = table_lock([t.as_str()])
        .mode(TableLockMode::Share)
        .acquire()
        .await
        .unwrap();
    let holder_pid = holder.connection().backend_pid();

    // A compatible mode is granted.
    let share = table_lock([t.as_str()])
        .mode(TableLockMode::Share)
        .no_wait()
        .acquire()
        .await
        .unwrap();
    share.commit().await.unwrap();

    let err = table_lock([t.as_str()])
        .no_wait()
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err:?}");
    assert_eq!(
        err.holders().iter().map(|h| h.pid).collect::<Vec<_>>(),
        vec![holder_pid]
    );
    assert_eq!(err.holders()[0].mode, "ShareLock");

    let started = Instant::now();
    let err = table_lock([t.as_str()])
        .timeout(Duration::from_millis(300))
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(err.holders()[0].pid, holder_pid);

    // In a caller's transaction, a failure leaves it usable and its lock_timeout alone.
    let mut client = connect(url()).await;
    client
        .batch_execute("SET lock_timeout = '8s'")
        .await
        .unwrap();
    let txn = client.transaction().await.unwrap();
    let err = table_lock([t.as_str()])
        .timeout(Duration::from_millis(100))
        .acquire_in(&txn)
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    let lt = show_lock_timeout(txn.client()).await;
    assert_eq!(lt, "8s");
    txn.rollback().await.unwrap();

    // Waiting without limit gets it when the holder commits.
    let waiter = tokio::spawn({
        let t = t.clone();
        async move {
            table_lock([t.as_str()])
                .acquire()
                .await
                .map(|g| g.connection().backend_pid())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.commit().await.unwrap();
    let pid = within(10, "waiter gets the table", waiter)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(pid, holder_pid);
}

#[tokio::test]
async fn table_locks_need_a_transaction_inside_scopes() {
    setup();
    let obs = observer().await;
    let t = table(&obs, "scoped").await;
    lock_timeout(Duration::from_secs(5))
        .scope(async {
            let err = table_lock([t.as_str()]).acquire().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage);
            let db = connection().await.unwrap();
            db.batch_execute("BEGIN").await.unwrap();
            let g = table_lock([t.as_str()]).acquire().await.unwrap();
            assert_eq!(
                relation_modes(&obs, db.backend_pid(), &t).await,
                vec!["AccessExclusiveLock"]
            );
            // The guard does not own the scope's transaction.
            assert_eq!(g.commit().await.unwrap_err().kind(), ErrorKind::Usage);
            assert_eq!(
                relation_modes(&obs, db.backend_pid(), &t).await,
                vec!["AccessExclusiveLock"]
            );
            db.batch_execute("COMMIT").await.unwrap();
            assert!(relation_modes(&obs, db.backend_pid(), &t).await.is_empty());
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn dropped_table_guard_rolls_back() {
    setup();
    let obs = observer().await;
    let t = table(&obs, "dropped").await;
    let g = table_lock([t.as_str()]).acquire().await.unwrap();
    let pid = g.connection().backend_pid();
    g.client()
        .execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .await
        .unwrap();
    drop(g);
    for _ in 0..500 {
        if relation_modes(&obs, pid, &t).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(relation_modes(&obs, pid, &t).await.is_empty());
    let n: i64 = query_value(&obs, &format!("SELECT count(*) FROM {t}")).await;
    assert_eq!(n, 0, "rolled back");
}

#[tokio::test]
async fn try_acquire_and_blocking_forms() {
    setup();
    let obs = observer().await;
    let t = table(&obs, "tryblk").await;
    let holder = table_lock([t.as_str()]).acquire().await.unwrap();
    assert!(table_lock([t.as_str()])
        .no_wait()
        .try_acquire()
        .await
        .unwrap()
        .is_none());
    holder.rollback().await.unwrap();
    let g = table_lock([t.as_str()])
        .no_wait()
        .try_acquire()
        .await
        .unwrap()
        .expect("free");
    g.commit().await.unwrap();

    let t2 = t.clone();
    tokio::task::spawn_blocking(move || {
        let g = table_lock([t2.as_str()]).acquire_blocking().unwrap();
        g.connection()
            .execute(&format!("INSERT INTO {t2} VALUES (7)"), &[])
            .unwrap();
        g.commit().unwrap();
        // Dropped without commit: rolled back before the drop returns.
        let g = table_lock([t2.as_str()]).acquire_blocking().unwrap();
        g.connection()
            .execute(&format!("INSERT INTO {t2} VALUES (8)"), &[])
            .unwrap();
        drop(g);
    })
    .await
    .unwrap();
    let rows: Vec<i32> = obs
        .query(&format!("SELECT x FROM {t} ORDER BY x"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        vec![7],
        "the committed row stays, the dropped guard's is rolled back"
    );
}

#[tokio::test]
async fn names_longer_than_postgres_identifiers_are_refused_not_truncated() {
    setup();
    let obs = observer().await;
    // The server would cut the 64-byte name to its first 63 bytes: the table
    // of that name must not be locked instead.
    let short = format!("t{}_", unique_key().unsigned_abs());
    let short = format!("{short}{}", "x".repeat(63 - short.len()));
    assert_eq!(short.len(), 63);
    obs.batch_execute(&format!("CREATE TABLE \"{short}\" (x int)"))
        .await
        .unwrap();
    let long = format!("{short}y");
    let err = table_lock([Table::new(long.clone())])
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert!(err.to_string().contains("at most 63"), "{err}");
    let err = table_lock([Table::qualified(long, "t")])
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    // 63 bytes is a name like any other.
    let g = table_lock([Table::new(short)]).acquire().await.unwrap();
    g.rollback().await.unwrap();
}
