//! Whether a connection reaches the server itself or a connection pooler that
//! answers for it, and what that allows: the declaration ([`Pooling`]), the
//! evidence (the cancel key the client was given against `pg_backend_pid()`),
//! and what a session concludes from both ([`Route`]).
//!
//! The evidence: at startup the server gives each client its backend pid and a
//! secret in the cancel key (`BackendKeyData`). A pooler cannot pass the server's
//! on, since a client's server session changes or is shared, so it makes up a
//! key of its own (PgBouncer: eight random bytes, in every pool mode) and maps
//! cancel requests itself. A plain TCP forwarder (a container's port mapping, an
//! SSH tunnel) forwards the server's key unchanged. So a key whose pid is not the
//! session's `pg_backend_pid()` says that a pooler is in between; whether it
//! pools by session or by transaction it does not say, and no finite probe
//! proves session pooling (a transaction pooler with one client may hand it the
//! same server session every time), so that is for the user to declare.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};
use tokio_postgres::Client;

/// What an alias's connections go through, as far as session state is
/// concerned ([`Config::pooling`](crate::Config::pooling)).
///
/// Session-level advisory locks (and session `lock_timeout` scopes) belong to a
/// server session: they exclude others only while every statement of the
/// connection runs on that one session. A transaction pooler (PgBouncer
/// `pool_mode = transaction`) runs each transaction on whichever server session
/// is free, so there they would not stay with the connection.
///
/// ```
/// use pglock_runtime::{Config, Pooling};
///
/// // PgBouncer in session mode: one server session per client, session locks work.
/// let config = Config::from_url("postgres://app@127.0.0.1:6432/app")?
///     .pooling(Pooling::Session);
/// assert_eq!(config.get_pooling(), Pooling::Session);
/// # Ok::<(), pglock_runtime::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pooling {
    /// Not declared (the default): pglock looks when it connects. A connection
    /// to the server itself, or through a plain TCP forwarder, works fully. A
    /// connection through a pooler (the cancel key the client got is not its
    /// server session's) gets transaction-level (`xact`) locks and table locks,
    /// with unnamed statements only; session-level locks are refused with
    /// [`ErrorKind::Pooler`](crate::ErrorKind::Pooler), whose message says how
    /// to declare the pooler's mode, since pglock cannot tell it.
    #[default]
    Detect,
    /// Every connection keeps one server session for its whole life: the
    /// server itself, a plain forwarder, or a pooler in session mode (PgBouncer
    /// `pool_mode = session`). Session-level locks work; behind a pooler
    /// pglock's statements are still unnamed (a server session the pooler hands
    /// on may carry another client's prepared statements).
    Session,
    /// A transaction pooler (PgBouncer `pool_mode = transaction`): unnamed
    /// statements only, no session state; session-level locks and session
    /// `lock_timeout` scopes are refused with
    /// [`ErrorKind::Pooler`](crate::ErrorKind::Pooler); `xact` locks and table
    /// locks work.
    Transaction,
}

/// What one session goes through, from the declaration and the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Route {
    /// The server itself (or a plain forwarder): prepared statements, session state.
    Direct = 0,
    /// A pooler declared to keep one server session per client: session
    /// state, unnamed statements.
    SessionPooler = 1,
    /// A pooler whose mode is not declared: no session state, unnamed statements.
    UnknownPooler = 2,
    /// A transaction pooler, declared or caught (a statement ran on another
    /// server session): no session state, unnamed statements.
    TransactionPooler = 3,
}

impl Route {
    /// What a session opened under `declared` goes through, given the pid of
    /// the cancel key its client got (`None`: not read) and its `pg_backend_pid()`.
    pub(crate) fn of(declared: Pooling, key_pid: Option<i32>, backend_pid: i32) -> Route {
        let pooler_seen = key_pid.is_some_and(|k| k != backend_pid);
        match (declared, pooler_seen) {
            (Pooling::Transaction, _) => Route::TransactionPooler,
            (Pooling::Session, true) => Route::SessionPooler,
            (Pooling::Detect, true) => Route::UnknownPooler,
            (Pooling::Session | Pooling::Detect, false) => Route::Direct,
        }
    }

    /// Whether session-level state (session locks, settings, the server's idle
    /// timers) stays with the connection.
    pub(crate) fn keeps_session_state(self) -> bool {
        matches!(self, Route::Direct | Route::SessionPooler)
    }

    /// Whether pglock may prepare named statements on the session.
    pub(crate) fn prepares(self) -> bool {
        self == Route::Direct
    }

    fn from_u8(v: u8) -> Route {
        match v {
            0 => Route::Direct,
            1 => Route::SessionPooler,
            2 => Route::UnknownPooler,
            _ => Route::TransactionPooler,
        }
    }
}

/// A [`Route`] that a session may learn more about later.
#[derive(Debug)]
pub(crate) struct RouteCell(AtomicU8);

impl RouteCell {
    pub(crate) fn new(route: Route) -> RouteCell {
        RouteCell(AtomicU8::new(route as u8))
    }

    pub(crate) fn get(&self) -> Route {
        Route::from_u8(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, route: Route) {
        self.0.store(route as u8, Ordering::Relaxed);
    }
}

/// The backend pid in the cancel key `client` was given at startup, read
/// without any I/O: tokio-postgres keeps the key private, so a cancel request is
/// written into an in-memory pipe (over a pass-through "TLS" layer, whatever the
/// client's `sslmode`) and read back. `None` if the bytes are not a cancel
/// request (a tokio-postgres that frames it differently).
pub(crate) async fn cancel_key_pid(client: &Client) -> Option<i32> {
    let (ours, mut theirs) = tokio::io::duplex(64);
    let token = client.cancel_token();
    let send = async move {
        // Ends when the request is written (it shuts its end down) or the
        // reader gave up (its end dropped).
        let _ = token.cancel_query_raw(ours, PassThrough).await;
    };
    let read = async move {
        loop {
            let len = theirs.read_i32().await.ok()?;
            let code = theirs.read_i32().await.ok()?;
            match (len, code) {
                // SSLRequest: "yes", and the pass-through layer follows.
                (8, SSL_REQUEST_CODE) => theirs.write_all(b"S").await.ok()?,
                (16, CANCEL_REQUEST_CODE) => {
                    let pid = theirs.read_i32().await.ok()?;
                    return Some(pid);
                }
                _ => return None,
            }
        }
    };
    let ((), pid) = futures_util::future::join(send, read).await;
    pid
}

/// The request codes of the protocol's startup packets.
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
const SSL_REQUEST_CODE: i32 = 80_877_103;

/// A "TLS" layer that passes the bytes through, for [`cancel_key_pid`].
struct PassThrough;

impl TlsConnect<DuplexStream> for PassThrough {
    type Stream = Plain;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Plain, std::io::Error>>;

    fn connect(self, stream: DuplexStream) -> Self::Future {
        std::future::ready(Ok(Plain(stream)))
    }
}

/// The pipe, as [`PassThrough`]'s stream.
struct Plain(DuplexStream);

impl AsyncRead for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl TlsStream for Plain {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::{Pooling, Route};

    #[test]
    fn a_foreign_cancel_key_means_a_pooler_whose_mode_is_declared_or_unknown() {
        use Route::*;
        for (declared, key, route) in [
            (Pooling::Detect, Some(7), Direct),
            (Pooling::Detect, Some(-12345), UnknownPooler),
            (Pooling::Detect, None, Direct),
            (Pooling::Session, Some(7), Direct),
            (Pooling::Session, Some(8), SessionPooler),
            (Pooling::Transaction, Some(7), TransactionPooler),
            (Pooling::Transaction, Some(8), TransactionPooler),
        ] {
            assert_eq!(Route::of(declared, key, 7), route, "{declared:?} {key:?}");
        }
        assert!(Direct.prepares() && Direct.keeps_session_state());
        assert!(!SessionPooler.prepares() && SessionPooler.keeps_session_state());
        for r in [UnknownPooler, TransactionPooler] {
            assert!(!r.prepares() && !r.keeps_session_state(), "{r:?}");
            assert_eq!(Route::from_u8(r as u8), r);
        }
        assert_eq!(Pooling::default(), Pooling::Detect);
    }
}
