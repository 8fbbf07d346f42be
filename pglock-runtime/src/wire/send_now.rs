//! Sending a statement from `Drop`, where nothing can be awaited.

use std::future::Future;
use std::pin::pin;
use std::task::Context;

/// Puts the request of a tokio-postgres future on the wire now, without waiting for
/// its response. tokio-postgres sends a simple query during the first poll and
/// discards responses nobody waits for, so the statement still runs, in order with
/// everything else sent on that connection. For backstops in `Drop`.
pub(crate) fn send_now<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let _ = fut.as_mut().poll(&mut cx);
}
