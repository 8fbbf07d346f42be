//! Bounded waits: every wait in a test ends, with a message saying what did not
//! happen.

use std::future::Future;
use std::time::{Duration, Instant};

/// Waits until `f` returns true, polling every 20 ms for at most `limit`.
/// Returns whether it did.
pub(crate) fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Awaits `fut` for at most `secs` seconds.
///
/// # Panics
///
/// After `secs` seconds, with `what` in the message.
pub async fn within<F: Future>(secs: u64, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s: {what}"),
    }
}
