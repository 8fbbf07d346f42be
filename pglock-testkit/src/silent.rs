//! A server that never answers: a loopback listener that accepts every
//! connection and says nothing, keeping the sockets, so a test can tell how
//! many of them the client still has open.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{err, HarnessError};

/// A loopback listener that accepts and stays silent, until dropped.
#[derive(Debug)]
pub struct SilentServer {
    port: u16,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    /// Starts accepting on a free loopback port (on a thread of its own).
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub fn start() -> Result<SilentServer, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| err(format!("cannot bind a loopback port: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| err(format!("listener: {e}")))?
            .port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::downgrade(&accepted);
        std::thread::Builder::new()
            .name(format!("silent-server-{port}"))
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let Some(keep) = keep.upgrade() else { return };
                    keep.lock().unwrap_or_else(|e| e.into_inner()).push(stream);
                }
            })
            .map_err(|e| err(format!("cannot start the listener thread: {e}")))?;
        Ok(SilentServer { port, accepted })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// How many accepted connections the client has not closed yet (a read
    /// that neither ends nor fails within a moment means the socket is open).
    pub fn still_open(&self) -> usize {
        let streams = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        streams
            .iter()
            .filter(|s| {
                let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                let mut buf = [0u8; 1024];
                loop {
                    match (&mut &**s).read(&mut buf) {
                        // The client's startup packet: read on.
                        Ok(n) if n > 0 => continue,
                        // End of stream or a reset: closed.
                        Ok(_) => return false,
                        Err(e) => {
                            return matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            )
                        }
                    }
                }
            })
            .count()
    }
}
