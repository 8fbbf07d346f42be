//! Issue 14.6: each annotated call and each imperative acquisition runs in a
//! `tracing` span with the lock's name, key, alias, mode and outcome, and
//! OpenTelemetry's database attributes; the body's own spans are its children.

use std::time::Duration;

use pglock_runtime::{advisory, advisory_lock, Error};
use pglock_tests::*;

#[advisory_lock(key = "spans::nightly")]
async fn nightly() -> Result<u32, Error> {
    let _inner = tracing::info_span!("user.body").entered();
    Ok(7)
}

#[advisory_lock(key = key, timeout = 0, on_fail = skip)]
async fn skipped(key: i64) -> Result<(), Error> {
    Ok(())
}

#[tokio::test]
async fn an_annotated_call_is_a_span_with_its_lock_and_outcome() {
    setup();
    let (_guard, spans) = capture_spans();
    assert_eq!(nightly().await.unwrap(), 7);
    let calls = spans.named("pglock");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let s = &calls[0];
    assert_eq!(s.field("pglock.call"), Some("scope"));
    assert_eq!(s.field("db.system"), Some("postgresql"));
    assert_eq!(s.field("db.system.name"), Some("postgresql"));
    assert_eq!(s.field("db.operation.name"), Some("pg_advisory_lock"));
    assert_eq!(
        s.field("otel.name"),
        Some("pg_advisory_lock spans::nightly")
    );
    assert_eq!(s.field("pglock.lock_name"), Some("spans::nightly"));
    assert_eq!(s.field("pglock.alias"), Some("default"));
    assert_eq!(s.field("pglock.mode"), Some("exclusive"));
    assert_eq!(
        s.field("pglock.key"),
        Some(
            pglock_runtime::advisory("spans::nightly")
                .key()
                .to_string()
                .as_str()
        )
    );
    assert_eq!(s.field("pglock.outcome"), Some("ran"));
    assert_eq!(s.field("otel.status_code"), None);
    let body = spans.named("user.body");
    assert_eq!(body.len(), 1);
    assert_eq!(
        body[0].parent,
        Some(s.id),
        "the body's span is the call's child"
    );
}

#[tokio::test]
async fn a_busy_skip_is_an_outcome_not_an_error() {
    setup();
    let key = unique_key();
    let holder = advisory(key).acquire().await.unwrap();
    let (_guard, spans) = capture_spans();
    skipped(key).await.unwrap();
    let calls = spans.named("pglock");
    let call = calls
        .iter()
        .find(|s| s.field("pglock.call") == Some("scope"))
        .expect("the call's span");
    assert_eq!(call.field("pglock.outcome"), Some("busy"));
    assert_eq!(
        call.field("db.operation.name"),
        Some("pg_try_advisory_lock")
    );
    assert_eq!(call.field("otel.status_code"), None);
    drop(_guard);
    holder.release().await.unwrap();
}

#[tokio::test]
async fn an_acquisition_that_times_out_is_an_error_span() {
    setup();
    let key = unique_key();
    let holder = advisory(key).acquire().await.unwrap();
    let (_guard, spans) = capture_spans();
    let e = other_alias_acquire(key).await;
    assert!(e.is_timeout(), "{e}");
    let s = spans
        .named("pglock")
        .into_iter()
        .find(|s| s.field("pglock.call") == Some("acquire"))
        .expect("the acquisition's span");
    assert_eq!(s.field("pglock.outcome"), Some("timed out"));
    assert_eq!(s.field("error.type"), Some("LockTimeout"));
    assert_eq!(s.field("otel.status_code"), Some("ERROR"));
    assert_eq!(s.field("pglock.wait"), Some("200ms"));
    assert_eq!(s.field("pglock.alias"), Some("other"));
    drop(_guard);
    holder.release().await.unwrap();
}

async fn other_alias_acquire(key: i64) -> pglock_runtime::Error {
    advisory(key)
        .timeout(Duration::from_millis(200))
        .using(other())
        .acquire()
        .await
        .unwrap_err()
}
