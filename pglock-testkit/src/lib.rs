//! Throw-away PostgreSQL clusters for tests, examples and benchmarks, and the
//! helpers that observe them from outside the code under test.
//!
//! [`Cluster::start`] runs `initdb` into a fresh temporary directory and starts a
//! server on a free loopback port with durability switched off. When the process
//! runs as root, the server runs as the `postgres` operating-system user (PostgreSQL
//! refuses to run as root). A small reaper process stops the server and removes its
//! files when the owning process exits, however it exits, so nothing is left behind
//! even when a test binary panics or is killed.
//!
//! [`database_url`] is what tests and examples call: it returns `DATABASE_URL` when
//! that is set and otherwise starts one cluster for the whole process.
//!
//! ```no_run
//! let url = pglock_testkit::database_url();
//! println!("connect to {url}");
//! ```
//!
//! The modules, one concept each:
//!
//! - [`Cluster`]: `initdb`, start, stop, restart, standbys;
//! - [`PgBouncer`]: a pooler in front of a cluster ([`Cluster::start_pgbouncer`],
//!   with TLS for its clients: [`Cluster::start_pgbouncer_tls`]);
//! - [`PartitionProxy`]: a loopback forwarder that pauses (a silent
//!   partition), resumes and cuts connections;
//! - [`SilentServer`]: a loopback listener that accepts and never answers;
//! - [`TestCerts`]: a CA and certificates made at test time, and a TLS-only
//!   cluster ([`Cluster::start_tls`]);
//! - [`observe`]: plain sessions, backends in `pg_stat_activity`, blockers;
//! - [`within`]: a bounded wait for a future.

mod cluster;
mod host;
pub mod observe;
mod pgbouncer;
mod proxy;
mod reaper;
mod silent;
mod tls;
mod wait;

use std::fmt;
use std::sync::OnceLock;

pub use cluster::{Cluster, APP_ROLE};
pub use pgbouncer::PgBouncer;
pub use proxy::PartitionProxy;

/// A loopback port nobody listens on (at the time of asking): a server that
/// refuses connections.
///
/// # Panics
///
/// When no loopback port can be bound.
pub fn free_port() -> u16 {
    host::free_port().unwrap_or_else(|e| panic!("{e}"))
}
pub use silent::SilentServer;
pub use tls::{TestCerts, CERT_USER};
pub use wait::within;

/// Why a cluster could not be started or controlled.
#[derive(Debug)]
pub struct HarnessError(String);

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

fn err(msg: impl Into<String>) -> HarnessError {
    HarnessError(msg.into())
}

/// The database URL tests should use: `DATABASE_URL` when it is set, otherwise the
/// URL of a cluster started once for this process (and stopped when it exits).
///
/// # Panics
///
/// When `DATABASE_URL` is unset and no cluster can be started; the message says why
/// (for instance which package provides the PostgreSQL binaries).
pub fn database_url() -> String {
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        return url;
    }
    shared_cluster().url()
}

/// The cluster started once for this process, whatever `DATABASE_URL` says.
///
/// Tests that stop, restart or kill a server must use a cluster of their own
/// ([`Cluster::start`]) so that they never touch a server they did not start.
///
/// # Panics
///
/// When the cluster cannot be started; the message says why.
pub fn shared_cluster() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| match Cluster::start() {
        Ok(cluster) => cluster,
        Err(e) => panic!("could not start a throw-away PostgreSQL cluster: {e}"),
    })
}
