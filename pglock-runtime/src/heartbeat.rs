//! Lock-loss detection: while a lock is held on a pooled connection, a task checks
//! every interval, on that session, that it still holds the lock.

use std::sync::Arc;

use tokio::sync::watch;

use crate::advisory::holds;
use crate::connection::Connection;
use crate::error::{Error, ErrorKind};
use crate::exec::Exec;
use crate::key::LockKey;
use crate::rt;

/// A running heartbeat; stops when dropped.
pub(crate) struct Heartbeat {
    lost: watch::Receiver<Option<Arc<str>>>,
    task: tokio::task::JoinHandle<()>,
    key: LockKey,
}

impl Heartbeat {
    /// Starts checking `key` on `conn`, if the alias has a heartbeat.
    pub(crate) fn start(conn: &Connection, key: LockKey, shared: bool) -> Option<Heartbeat> {
        let every = conn.heartbeat_interval()?;
        let (tx, rx) = watch::channel(None);
        let conn = conn.clone();
        let task = rt::spawn(async move {
            let why = loop {
                tokio::time::sleep(every).await;
                if conn.is_closed() {
                    break "its connection is closed";
                }
                match holds(Exec::pooled(&conn), key, shared).await {
                    Ok(true) => {}
                    Ok(false) => break "its session no longer holds it",
                    Err(e) if e.is_connection_lost() => break "its connection was lost",
                    // An aborted transaction, a cancelled statement: says nothing
                    // about the lock; look again next time.
                    Err(_) => {}
                }
            };
            tracing::error!(target: "pglock", key = %key, pid = conn.backend_pid(), reason = why,
                "advisory lock lost while held");
            conn.discard();
            let _ = tx.send(Some(Arc::from(why)));
        });
        Some(Heartbeat {
            lost: rx,
            task,
            key,
        })
    }

    /// Whether the loss has been detected.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Resolves with the error once the loss is detected.
    pub(crate) async fn lost(&self) -> Error {
        let mut rx = self.lost.clone();
        // Clone out of the borrow before any other await: the future stays `Send`.
        let why = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        let Some(why) = why else {
            // The task ended without a loss (it never does on its own): wait forever.
            return std::future::pending().await;
        };
        Error::new(
            ErrorKind::LockLost,
            format!("the lock was lost while held: {why}"),
        )
        .with_key(self.key)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
