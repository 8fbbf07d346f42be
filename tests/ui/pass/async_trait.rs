//! Functions inside `#[async_trait]` impls: the inner future is wrapped.

use pglock_runtime::{advisory_lock, Error};

#[async_trait::async_trait]
trait Job {
    async fn run(&self, id: i64) -> Result<u8, Error>;
    async fn maybe(&self) -> Option<u8>;
}

struct J;

#[async_trait::async_trait]
impl Job for J {
    #[advisory_lock(key = id)]
    async fn run(&self, id: i64) -> Result<u8, Error> {
        Ok(u8::try_from(id).unwrap_or(0))
    }

    #[advisory_lock(timeout = 0, on_fail = skip)]
    async fn maybe(&self) -> Option<u8> {
        Some(1)
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(J.run(1));
    assert_send(J.maybe());
}
