//! With `#[tokio::main]` (what `#[tokio::test]` expands through) and
//! `#[tracing::instrument]` on the same function, in either order.

use pglock_runtime::{advisory_lock, lock_timeout, Error};

#[tokio::main]
#[advisory_lock]
async fn runtime_above() -> Result<(), Error> {
    Ok(())
}

#[advisory_lock]
#[tokio::main]
async fn runtime_below() -> Result<(), Error> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
#[advisory_lock(timeout = 0, on_fail = skip)]
async fn runtime_skip() {}

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

#[tracing::instrument(err)]
#[lock_timeout("1s")]
#[advisory_lock(key = id, xact)]
fn instrumented_sync(id: i64) -> Result<i64, Error> {
    if id < 0 {
        return Ok(0);
    }
    Ok(id)
}

#[advisory_lock(key = id)]
#[tracing::instrument(skip(id))]
#[lock_timeout("1s")]
async fn instrumented_between(id: i64) -> Result<i64, Error> {
    Ok(id)
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(instrumented_above(1));
    assert_send(instrumented_below(1));
    assert_send(instrumented_between(1));
    let _ = (runtime_above, runtime_below, runtime_skip, instrumented_sync);
}
