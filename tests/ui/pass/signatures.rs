//! Every signature shape the attributes accept compiles, and the futures are Send.

use std::sync::Arc;

use pglock_runtime as my_pglock;
use pglock_runtime::{advisory_lock, lock_timeout, prioritize, Error};

struct Svc {
    n: u32,
}

impl Svc {
    #[advisory_lock(key = self.n)]
    async fn by_ref(&self) -> Result<u32, Error> {
        Ok(self.n)
    }

    #[advisory_lock(key = ("svc", self.n), shared)]
    async fn by_mut(&mut self) -> Result<(), Error> {
        self.n += 1;
        Ok(())
    }

    #[advisory_lock(timeout = 0, on_fail = skip)]
    async fn by_arc(self: Arc<Self>) -> Option<u32> {
        Some(self.n)
    }

    #[advisory_lock]
    fn sync_method(&self) -> Result<u32, Error> {
        Ok(self.n)
    }
}

trait Job {
    fn run(&self) -> Result<u8, Error>;
}

impl Job for Svc {
    #[advisory_lock(key = 7)]
    fn run(&self) -> Result<u8, Error> {
        Ok(1)
    }
}

#[advisory_lock(key = id)]
async fn generic<T: Send + std::fmt::Debug, U>(id: i64, t: T, u: U) -> Result<String, Error>
where
    U: Send + Into<String>,
{
    Ok(format!("{t:?}{}", u.into()))
}

#[advisory_lock(timeout = 0, on_fail = skip)]
async fn impl_trait() -> Option<impl std::fmt::Display> {
    Some(1)
}

#[advisory_lock]
fn sync_impl_trait() -> Result<impl std::fmt::Display, Error> {
    Ok(1)
}

#[advisory_lock]
unsafe fn unsafe_fn(p: *const u8) -> Result<u8, Error> {
    Ok(*p)
}

#[must_use]
#[advisory_lock(xact)]
async fn must_use() -> Result<u8, Error> {
    Ok(1)
}

#[advisory_lock]
fn inner_attrs() -> Result<(), Error> {
    #![allow(unused_variables)]
    let x = 1;
    Ok(())
}

#[advisory_lock(key = 1, xact)]
fn early_returns(flag: bool) -> Result<u8, Error> {
    if flag {
        return Ok(1);
    }
    let closure = || -> u8 { 5 };
    let nested = async { 6 };
    drop(nested);
    fn item() -> u8 {
        return 7;
    }
    Ok(closure() + item())
}

#[lock_timeout("5s")]
#[advisory_lock]
async fn stacked_a() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock]
#[lock_timeout("5s")]
async fn stacked_b() -> Result<(), Error> {
    Ok(())
}

#[prioritize(interval = "1s", timeout = "2s")]
#[lock_timeout(none)]
#[advisory_lock(timeout = none, hash = sqlx, key = "k")]
async fn stacked_three() -> Result<(), Error> {
    Ok(())
}

#[lock_timeout(2.5)]
fn sync_lock_timeout() -> Result<(), Error> {
    Ok(())
}

#[prioritize(action = cancel, max_kills = 2, dry_run, periodic = false, min_blocker_age = "5s")]
async fn prio() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock(timeout = 0, on_fail = skip)]
fn skip_unit() {}

#[advisory_lock(timeout = 0, on_fail = skip, on_lost = cancel)]
async fn skip_result() -> Result<Option<u8>, Error> {
    Ok(Some(1))
}

struct Mine;

impl pglock_runtime::Skipped for Mine {
    fn skipped() -> Self {
        Mine
    }
}

#[advisory_lock(timeout = 0, on_fail = skip)]
async fn skip_custom() -> Mine {
    Mine
}

#[advisory_lock(crate = "my_pglock", using = "reports", hash = django_pglocks_v1)]
async fn renamed() -> Result<(), my_pglock::Error> {
    Ok(())
}

#[derive(Debug)]
enum AppError {
    Lock(Error),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Lock(e)
    }
}

#[advisory_lock(key = "app")]
async fn own_error_type() -> Result<(), AppError> {
    Ok(())
}

// Borrowed returns, elided and named lifetimes.
struct Named {
    name: String,
}

impl Named {
    #[advisory_lock(key = self.name.as_str())]
    async fn name(&self) -> Result<&str, Error> {
        Ok(&self.name)
    }

    #[advisory_lock(key = self.name.as_str())]
    fn name_sync<'a>(&'a self, other: &'a str) -> Result<&'a str, Error> {
        if other.is_empty() {
            return Ok(&self.name);
        }
        Ok(other)
    }
}

// `async fn` in traits (native), in the definition's default body and in impls.
trait NativeAsync {
    #[advisory_lock]
    async fn default_body(&self) -> Result<u8, Error> {
        Ok(1)
    }

    async fn required(&self) -> Result<u8, Error>;
}

impl NativeAsync for Named {
    #[advisory_lock(key = self.name.as_str(), timeout = 0)]
    async fn required(&self) -> Result<u8, Error> {
        Ok(2)
    }
}

// A plain function returning a future: the lock is held while the future runs.
#[advisory_lock(key = id)]
fn returns_future(id: i64) -> impl std::future::Future<Output = Result<i64, Error>> + Send {
    async move { Ok(id) }
}

#[advisory_lock(key = id, timeout = 0, on_fail = skip)]
fn returns_boxed_future(
    id: i64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<i64>> + Send>> {
    Box::pin(async move { Some(id) })
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let named = Named { name: "n".into() };
    assert_send(named.name());
    assert_send(named.default_body());
    assert_send(named.required());
    let _ = named.name_sync("x");
    assert_send(generic(1, 2u8, "x"));
    assert_send(skip_custom());
    assert_send(Svc { n: 1 }.by_ref());
    assert_send(Arc::new(Svc { n: 1 }).by_arc());
    assert_send(stacked_three());
    assert_send(skip_result());
    assert_send(renamed());
    assert_send(own_error_type());
    assert_send(impl_trait());
    assert_send(prio());
    assert_send(must_use());
    assert_send(stacked_a());
    assert_send(stacked_b());
    assert_send(returns_future(1));
    assert_send(returns_boxed_future(1));
    let _ = (
        Svc::sync_method,
        Svc::by_mut,
        <Svc as Job>::run,
        sync_impl_trait,
        unsafe_fn as unsafe fn(*const u8) -> Result<u8, Error>,
        inner_attrs,
        early_returns,
        sync_lock_timeout,
        skip_unit,
    );
}
