//! Generated code is clean under strict lints: every attribute form, compiled by
//! `cargo clippy --all-targets` (and rustc) with these denied, and run once
//! against the test cluster.

#![deny(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    unused_qualifications,
    unused_results,
    unused_lifetimes,
    rust_2018_idioms,
    trivial_casts,
    unit_bindings,
    let_underscore_drop,
    clippy::needless_return,
    clippy::let_underscore_untyped
)]
// The forms are what is under test, not whether these bodies need `async`.
#![allow(clippy::unused_async)]

use std::fmt::Display;
use std::sync::Arc;

use pglock_runtime as renamed_pglock;
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

#[advisory_lock(key = "sync", timeout = none, hash = django_pglocks)]
fn sync_fn(flag: bool) -> Result<u8, Error> {
    if flag {
        return Ok(1);
    }
    Ok(2)
}

#[advisory_lock(timeout = 0, on_fail = skip)]
fn sync_skip() {}

#[advisory_lock(timeout = 0.5, on_fail = skip, hash = postgres_lock)]
fn sync_skip_early(flag: bool) {
    if flag {
        return;
    }
    assert!(!flag);
}

#[advisory_lock(timeout = 0, on_fail = skip, hash = django_pglocks_v1)]
async fn async_skip_unit() {}

#[advisory_lock(timeout = 0, on_fail = skip)]
async fn skip_result() -> Result<Option<u8>, Error> {
    Ok(Some(1))
}

#[prioritize(interval = "200ms", timeout = "1s", max_kills = 1, dry_run)]
#[lock_timeout("5s")]
#[advisory_lock(key = 3)]
async fn stacked() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(key = 4)]
#[lock_timeout("5s")]
#[prioritize(interval = "200ms", action = cancel, periodic = false, min_blocker_age = "1s")]
fn stacked_sync() -> Result<(), Error> {
    Ok(())
}

#[lock_timeout(none)]
fn sync_timeout() -> Result<(), Error> {
    Ok(())
}

#[lock_timeout(1.5, using = "default")]
async fn async_timeout() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock]
async fn async_impl_trait() -> Result<impl Display, Error> {
    Ok(1)
}

#[advisory_lock]
fn sync_impl_trait() -> Result<impl Display, Error> {
    Ok(1)
}

#[advisory_lock(key = id)]
async fn generic<T, U>(id: i64, t: T, u: U) -> Result<String, Error>
where
    T: Send + Display,
    U: Send + Into<String>,
{
    Ok(format!("{t}{}", u.into()))
}

#[must_use = "it says whether the lock was taken"]
#[advisory_lock(key = 5)]
fn with_inner_attributes() -> Result<u8, Error> {
    #![allow(clippy::items_after_statements)]
    let x = 1;
    const Y: u8 = 2;
    Ok(x + Y)
}

#[advisory_lock(crate = "renamed_pglock", key = 6)]
async fn renamed() -> Result<(), Error> {
    Ok(())
}

struct Worker {
    id: i64,
}

impl Worker {
    #[advisory_lock(key = ("worker", self.id))]
    async fn by_ref(&self) -> Result<i64, Error> {
        Ok(self.id)
    }

    #[advisory_lock(key = ("worker", self.id))]
    fn by_mut(&mut self) -> Result<i64, Error> {
        self.id += 1;
        Ok(self.id)
    }

    #[advisory_lock(key = ("worker", self.id), timeout = 0, on_fail = skip)]
    async fn by_arc(self: Arc<Self>) -> Option<i64> {
        Some(self.id)
    }
}

#[async_trait::async_trait]
trait Job {
    async fn run(&self, id: i64) -> Result<i64, Error>;
}

#[async_trait::async_trait]
impl Job for Worker {
    #[advisory_lock(key = id)]
    async fn run(&self, id: i64) -> Result<i64, Error> {
        Ok(id + self.id)
    }
}

/// A plain function returning a future: the lock is held while the future runs
/// (it counts its own session's advisory locks).
#[allow(clippy::manual_async_fn)] // this form is the point
#[advisory_lock(key = id)]
fn returns_future(id: i64) -> impl std::future::Future<Output = Result<i64, Error>> + Send {
    async move {
        let db = pglock_runtime::connection().await?;
        let row = db
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }
}

#[tracing::instrument]
#[advisory_lock(key = id)]
async fn instrumented_above(id: i64) -> Result<i64, Error> {
    Ok(id)
}

#[advisory_lock(key = id)]
#[tracing::instrument]
async fn instrumented_below(id: i64) -> Result<i64, Error> {
    Ok(id)
}

#[tokio::test]
#[advisory_lock(key = 424_101, timeout = "5s")]
#[ignore = "run by every_form_runs once the alias is configured"]
async fn tokio_test_above() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(key = 424_102, timeout = "5s")]
#[tokio::test]
#[ignore = "run by every_form_runs once the alias is configured"]
async fn tokio_test_below() -> Result<(), Error> {
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
    sync_skip_early(true);
    sync_skip_early(false);
    async_skip_unit().await;
    assert_eq!(skip_result().await.unwrap(), Some(1));
    stacked().await.unwrap();
    stacked_sync().unwrap();
    sync_timeout().unwrap();
    async_timeout().await.unwrap();
    assert_eq!(async_impl_trait().await.unwrap().to_string(), "1");
    assert_eq!(sync_impl_trait().unwrap().to_string(), "1");
    assert_eq!(generic(id, 1, "x").await.unwrap(), "1x");
    assert_eq!(with_inner_attributes().unwrap(), 3);
    renamed().await.unwrap();
    let mut w = Worker { id };
    assert_eq!(w.by_ref().await.unwrap(), id);
    assert_eq!(w.by_mut().unwrap(), id + 1);
    assert_eq!(Arc::new(w).by_arc().await, Some(id + 1));
    assert_eq!(Worker { id: 1 }.run(id).await.unwrap(), id + 1);
    assert_eq!(returns_future(id).await.unwrap(), 1);
    assert_eq!(instrumented_above(id).await.unwrap(), id);
    assert_eq!(instrumented_below(id).await.unwrap(), id);
    // `#[tokio::test]` functions build their own runtime: call them from a thread
    // outside this one.
    std::thread::spawn(|| {
        tokio_test_above().unwrap();
        tokio_test_below().unwrap();
    })
    .join()
    .unwrap();
}
