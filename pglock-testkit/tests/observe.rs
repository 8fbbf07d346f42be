//! The observation helpers against a cluster of their own: blockers are seen
//! holding and blocking, terminated backends are gone, and values are read back.

use pglock_testkit::observe::{
    advisory_holder, assert_gone, backend_pid, backend_state, connect, is_gone, query_value,
    session, show_lock_timeout, simple_value, table_reader, terminate, wait_until_blocked,
};
use pglock_testkit::within;

#[tokio::test]
async fn blockers_block_and_terminated_backends_go() {
    let url = pglock_testkit::shared_cluster().url();
    let obs = connect(&url).await;
    obs.batch_execute("CREATE TABLE observe_t (x int)")
        .await
        .unwrap();

    let (reader, reader_pid) = table_reader(&url, "observe-reader", "observe_t").await;
    assert_eq!(
        backend_state(&obs, reader_pid).await.as_deref(),
        Some("idle in transaction")
    );
    let app: String = query_value(&reader, "SHOW application_name").await;
    assert_eq!(app, "observe-reader");
    let reading: i64 = query_value(
        &obs,
        &format!(
            "SELECT count(*) FROM pg_locks WHERE pid = {reader_pid} AND granted \
             AND mode = 'AccessShareLock' AND relation = 'observe_t'::regclass"
        ),
    )
    .await;
    assert_eq!(reading, 1);

    let (_holder, holder_pid) = advisory_holder(&url, "observe-holder", 4242).await;
    let holding: i64 = query_value(
        &obs,
        &format!(
            "SELECT count(*) FROM pg_locks WHERE pid = {holder_pid} AND granted \
             AND locktype = 'advisory' AND objid = 4242"
        ),
    )
    .await;
    assert_eq!(holding, 1);

    let waiter = session(&url, "observe-waiter").await;
    let waiter_pid = backend_pid(&waiter).await;
    assert!(![reader_pid, holder_pid].contains(&waiter_pid));
    let waiting = tokio::spawn(async move {
        waiter
            .batch_execute("BEGIN; LOCK TABLE observe_t; COMMIT")
            .await
    });
    wait_until_blocked(&obs, waiter_pid).await;
    assert!(!waiting.is_finished(), "the reader blocks the waiter");

    assert!(!is_gone(&obs, reader_pid).await);
    terminate(&obs, reader_pid).await;
    assert_gone(&obs, reader_pid).await;
    assert!(is_gone(&obs, reader_pid).await);
    within(10, "the waiter gets the table", waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(reader.batch_execute("SELECT 1").await.is_err());
}

#[tokio::test]
async fn values_of_one_row_queries() {
    let obs = connect(&pglock_testkit::shared_cluster().url()).await;
    assert_eq!(query_value::<i32>(&obs, "SELECT 6 * 7").await, 42);
    assert_eq!(show_lock_timeout(&obs).await, "0");
    // A simple query outside a transaction block is a transaction of its own.
    assert_eq!(
        simple_value(&obs, "SELECT now() = statement_timestamp()")
            .await
            .as_deref(),
        Some("t")
    );
    assert_eq!(simple_value(&obs, "SELECT NULL").await, None);
    assert_eq!(simple_value(&obs, "SET lock_timeout = '1s'").await, None);
    assert_eq!(show_lock_timeout(&obs).await, "1s");
}

#[tokio::test]
#[should_panic(expected = "timed out after 0s: forever")]
async fn within_bounds_a_wait() {
    within(0, "forever", std::future::pending::<()>()).await;
}
