//! A loopback TCP forwarder that can stand for a network partition: it
//! forwards between its clients and a server until told to
//! [`pause`](PartitionProxy::pause) (sockets stay open, nothing gets through
//! either way, no FIN: a half-open path), [`resume`](PartitionProxy::resume),
//! or [`cut`](PartitionProxy::cut) (every connection closed at once).
//!
//! It runs on a thread and runtime of its own, so it keeps working whatever
//! the test's runtime does.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{err, HarnessError};

/// What the forwarder does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Pause,
}

/// A forwarder from a loopback port of its own to `127.0.0.1:<target>`.
pub struct PartitionProxy {
    port: u16,
    mode: watch::Sender<Mode>,
    /// Bumped by [`PartitionProxy::cut`]: every connection of an older
    /// generation closes.
    generation: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for PartitionProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionProxy")
            .field("port", &self.port)
            .field("mode", &*self.mode.borrow())
            .finish_non_exhaustive()
    }
}

impl PartitionProxy {
    /// Starts forwarding from a free loopback port to `127.0.0.1:target`.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub fn start(target: u16) -> Result<PartitionProxy, HarnessError> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| err(format!("proxy cannot bind a loopback port: {e}")))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| err(format!("proxy socket: {e}")))?;
        let port = std_listener
            .local_addr()
            .map_err(|e| err(format!("proxy socket: {e}")))?
            .port();
        let (mode, mode_rx) = watch::channel(Mode::Forward);
        let (generation, generation_rx) = watch::channel(0u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let counter = accepted.clone();
        let thread = std::thread::Builder::new()
            .name(format!("partition-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                    let target = SocketAddr::from(([127, 0, 0, 1], target));
                    tokio::select! {
                        () = accept_loop(listener, target, mode_rx, generation_rx, counter) => {}
                        _ = shutdown_rx => {}
                    }
                });
            })
            .map_err(|e| err(format!("cannot start the proxy thread: {e}")))?;
        Ok(PartitionProxy {
            port,
            mode,
            generation,
            accepted,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` (a `postgres://…@127.0.0.1:<port>/…` URL) with its port replaced
    /// by the proxy's.
    ///
    /// # Panics
    ///
    /// When `url` has no `127.0.0.1:<port>` part.
    pub fn url_for(&self, url: &str) -> String {
        let start = url.find("127.0.0.1:").expect("a URL on 127.0.0.1") + "127.0.0.1:".len();
        let end = url[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(url.len(), |i| start + i);
        format!("{}{}{}", &url[..start], self.port, &url[end..])
    }

    /// Stops forwarding in both directions; sockets stay open and nothing is
    /// closed (what a client sees when the network path is cut silently).
    pub fn pause(&self) {
        self.mode.send_replace(Mode::Pause);
    }

    /// Forwards again, including what was held back.
    pub fn resume(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Closes every connection open now, both sides (new ones are still
    /// accepted).
    pub fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// How many client connections the proxy has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for PartitionProxy {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
    generation: watch::Receiver<u64>,
    accepted: Arc<AtomicU64>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::Relaxed);
        let Ok(server) = TcpStream::connect(target).await else {
            continue;
        };
        let (mode, mut generation) = (mode.clone(), generation.clone());
        let born = *generation.borrow_and_update();
        tasks.spawn(async move {
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::select! {
                () = pump(cr, sw, mode.clone()) => {}
                () = pump(sr, cw, mode) => {}
                _ = generation.wait_for(|g| *g != born) => {}
            }
            // Dropping both halves of both sockets closes them.
        });
    }
}

/// Copies `from` to `to`, holding everything back while paused.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Paused: neither read (so the sender's data piles up unanswered) nor
        // write.
        if mode.wait_for(|m| *m == Mode::Forward).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Paused mid-read: go back and wait.
            _ = mode.wait_for(|m| *m == Mode::Pause) => continue,
        };
        if mode.wait_for(|m| *m == Mode::Forward).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
