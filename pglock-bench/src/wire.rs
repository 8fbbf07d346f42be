//! A loopback TCP proxy that counts what a client asks of the server, so round
//! trips per operation are measured on the wire rather than guessed.
//!
//! Counted from the client's side of every proxied connection:
//!
//! - **turns**: client sends that follow server output (the client spoke, waited,
//!   and spoke again); a pipelined request sent before the previous reply arrived
//!   is in the same turn;
//! - **syncs**: `Sync` and simple `Query` messages, each answered by one
//!   `ReadyForQuery` (statements batches);
//! - **parses**: `Parse` messages (statements prepared);
//! - **statements**: every execution (`Bind` of a prepared statement, or a simple
//!   `Query`), by SQL text.
//!
//! The proxy can also delay everything the server sends by a fixed time: an
//! operation's latency divided by that delay is the number of round trips on its
//! critical path (what the caller waits for), which message counts alone cannot
//! tell for pipelined requests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
struct Stats {
    connects: AtomicU64,
    turns: AtomicU64,
    syncs: AtomicU64,
    parses: AtomicU64,
    statements: Mutex<HashMap<String, u64>>,
    delay_us: AtomicU64,
}

/// Counters at one instant; subtract two to get what happened in between.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Connections accepted.
    pub connects: u64,
    /// Client sends that followed server output.
    pub turns: u64,
    /// `Sync` plus simple `Query` messages.
    pub syncs: u64,
    /// `Parse` messages.
    pub parses: u64,
    /// Executions by SQL text.
    pub statements: BTreeMap<String, u64>,
}

impl Snapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut statements = BTreeMap::new();
        for (k, v) in &self.statements {
            let d = v - earlier.statements.get(k).copied().unwrap_or(0);
            if d > 0 {
                statements.insert(k.clone(), d);
            }
        }
        Snapshot {
            connects: self.connects - earlier.connects,
            turns: self.turns - earlier.turns,
            syncs: self.syncs - earlier.syncs,
            parses: self.parses - earlier.parses,
            statements,
        }
    }
}

/// A counting (and optionally delaying) proxy in front of one PostgreSQL server.
#[derive(Debug, Clone)]
pub struct WireCounter {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl WireCounter {
    /// Listens on a free loopback port and forwards every connection to
    /// `target` (`host:port`). Runs on the caller's tokio runtime.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(target: String) -> WireCounter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                s.connects.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(proxy(client, server, s.clone()));
            }
        });
        WireCounter { addr, stats }
    }

    /// `url` with its host and port replaced by the proxy's.
    ///
    /// # Panics
    ///
    /// When `url` has no `@host:port/` part.
    pub fn url(&self, url: &str) -> String {
        let at = url.rfind('@').expect("URL with user@host");
        let slash = url[at..].find('/').map_or(url.len(), |i| at + i);
        format!("{}{}{}", &url[..=at], self.addr, &url[slash..])
    }

    /// Delays everything the server sends by `d` from now on.
    pub fn set_delay(&self, d: Duration) {
        self.stats
            .delay_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let s = &self.stats;
        Snapshot {
            connects: s.connects.load(Ordering::Relaxed),
            turns: s.turns.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
            parses: s.parses.load(Ordering::Relaxed),
            statements: s
                .statements
                .lock()
                .expect("stats")
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }
    }
}

async fn proxy(client: TcpStream, server: TcpStream, stats: Arc<Stats>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let server_spoke = Arc::new(AtomicBool::new(true));
    let spoke = server_spoke.clone();
    let delay_stats = stats.clone();
    // Server → client, through a delay line when a delay is set.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let down_read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now()
                        + Duration::from_micros(delay_stats.delay_us.load(Ordering::Relaxed));
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down_write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            spoke.store(true, Ordering::Release);
            if cw.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    let up = async move {
        let mut parser = Frontend::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if server_spoke.swap(false, Ordering::AcqRel) {
                        stats.turns.fetch_add(1, Ordering::Relaxed);
                    }
                    parser.feed(&buf[..n], &stats);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sw.shutdown().await;
    };
    tokio::join!(down_read, down_write, up);
}

/// Frontend protocol framing: untyped startup packets, then typed messages.
#[derive(Debug, Default)]
struct Frontend {
    buf: VecDeque<u8>,
    started: bool,
    /// Prepared statement name → SQL text, for this connection.
    prepared: HashMap<String, String>,
}

fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    (&b[..end], b.get(end + 1..).unwrap_or(&[]))
}

fn normalize(sql: &[u8]) -> String {
    let s = String::from_utf8_lossy(sql);
    let s: Vec<&str> = s.split_whitespace().collect();
    let s = s.join(" ");
    if s.chars().count() > 90 {
        format!("{}…", s.chars().take(90).collect::<String>())
    } else {
        s
    }
}

impl Frontend {
    fn feed(&mut self, bytes: &[u8], stats: &Stats) {
        self.buf.extend(bytes);
        loop {
            let head = usize::from(self.started);
            if self.buf.len() < head + 4 {
                return;
            }
            let len_bytes: Vec<u8> = self.buf.range(head..head + 4).copied().collect();
            let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
            if self.buf.len() < head + len {
                return;
            }
            let msg: Vec<u8> = self.buf.drain(..head + len).collect();
            if self.started {
                self.message(msg[0], &msg[5..], stats);
            } else if msg.len() >= 8 && msg[4..8] == [0, 3, 0, 0] {
                // StartupMessage (protocol 3.0); SSL / GSS requests and cancel
                // requests stay untyped.
                self.started = true;
            }
        }
    }

    fn message(&mut self, kind: u8, body: &[u8], stats: &Stats) {
        let count = |text: String| {
            *stats
                .statements
                .lock()
                .expect("stats")
                .entry(text)
                .or_default() += 1;
        };
        match kind {
            b'S' => {
                stats.syncs.fetch_add(1, Ordering::Relaxed);
            }
            b'Q' => {
                stats.syncs.fetch_add(1, Ordering::Relaxed);
                count(normalize(cstr(body).0));
            }
            b'P' => {
                stats.parses.fetch_add(1, Ordering::Relaxed);
                let (name, rest) = cstr(body);
                let sql = normalize(cstr(rest).0);
                if name.is_empty() {
                    // Unnamed statement: executed by the Bind that follows.
                    self.prepared.insert(String::new(), sql);
                } else {
                    self.prepared
                        .insert(String::from_utf8_lossy(name).into_owned(), sql);
                }
            }
            b'B' => {
                let (_portal, rest) = cstr(body);
                let name = String::from_utf8_lossy(cstr(rest).0).into_owned();
                let sql = self
                    .prepared
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| format!("<statement {name}>"));
                count(sql);
            }
            _ => {}
        }
    }
}

/// `host:port` of a URL's first TCP host (for [`WireCounter::start`]).
pub fn host_port(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}
