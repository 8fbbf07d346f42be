//! Generated code is clean under strict lints: every attribute form, compiled by
//! `cargo clippy --all-targets` (and rustc) with these denied.

#![deny(clippy::all, clippy::pedantic, unused_qualifications)]
#![allow(clippy::unused_async)]

use pglock_runtime::{advisory_lock, lock_timeout, prioritize, Error};

#[advisory_lock]
async fn plain() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(key = ("invoice", id), shared, timeout = "2s", using = "default")]
async fn keyed(id: i64) -> Result<i64, Error> {
    Ok(id)
}

#[advisory_lock(key = 1, xact, timeout = 0, on_fail = skip, on_lost = cancel, hash = sqlx)]
async fn skipping() -> Option<u8> {
    Some(1)
}

#[advisory_lock(key = "sync", timeout = none)]
fn sync_fn(flag: bool) -> Result<u8, Error> {
    if flag {
        return Ok(1);
    }
    Ok(2)
}

#[advisory_lock(timeout = 0, on_fail = skip)]
fn sync_skip() {}

#[prioritize(interval = "200ms", timeout = "1s", max_kills = 1, dry_run)]
#[lock_timeout("5s")]
#[advisory_lock(key = 3)]
async fn stacked() -> Result<(), Error> {
    Ok(())
}

#[lock_timeout(none)]
fn sync_timeout() -> Result<(), Error> {
    Ok(())
}

#[tokio::test]
async fn every_form_runs() {
    pglock_tests::setup();
    plain().await.unwrap();
    let id = pglock_tests::unique_key();
    assert_eq!(keyed(id).await.unwrap(), id);
    assert_eq!(skipping().await, Some(1));
    assert_eq!(sync_fn(true).unwrap(), 1);
    assert_eq!(sync_fn(false).unwrap(), 2);
    sync_skip();
    stacked().await.unwrap();
    sync_timeout().unwrap();
}
