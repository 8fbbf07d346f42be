//! A PgBouncer in front of a [`Cluster`], for tests of pglock behind a pooler.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::host::{free_port, postgres_ids};
use crate::reaper::Reaper;
use crate::tls::{copy_private, TestCerts};
use crate::wait::wait_until;
use crate::{err, Cluster, HarnessError};

/// A PgBouncer in front of a [`Cluster`], on its own loopback port, stopped when
/// dropped (or when the process exits).
pub struct PgBouncer {
    port: u16,
    dir: PathBuf,
    _reaper: Reaper,
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl PgBouncer {
    /// A URL for the `postgres` database through the pooler.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

fn find_pgbouncer() -> Result<PathBuf, HarnessError> {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pgbouncer"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/pgbouncer")])
        .find(|p| p.is_file())
        .ok_or_else(|| err("pgbouncer was not found: install the Debian package `pgbouncer`"))
}

impl Cluster {
    /// Starts a PgBouncer in front of this cluster with `pool_mode` (`session`,
    /// `transaction` or `statement`) and at most `pool_size` server connections.
    ///
    /// # Errors
    ///
    /// When pgbouncer is not installed or does not start listening.
    pub fn start_pgbouncer(
        &self,
        pool_mode: &str,
        pool_size: u32,
    ) -> Result<PgBouncer, HarnessError> {
        self.start_pgbouncer_with(pool_mode, pool_size, None)
    }

    /// Like [`start_pgbouncer`](Cluster::start_pgbouncer), with TLS required of
    /// its clients (`client_tls_sslmode = require`, the server certificate of
    /// `certs`); it talks to the cluster without TLS, so the cluster must
    /// accept that (not [`Cluster::start_tls`]'s).
    ///
    /// # Errors
    ///
    /// When pgbouncer is not installed, the certificates cannot be copied, or
    /// it does not start listening.
    pub fn start_pgbouncer_tls(
        &self,
        pool_mode: &str,
        pool_size: u32,
        certs: &TestCerts,
    ) -> Result<PgBouncer, HarnessError> {
        self.start_pgbouncer_with(pool_mode, pool_size, Some(certs))
    }

    fn start_pgbouncer_with(
        &self,
        pool_mode: &str,
        pool_size: u32,
        certs: Option<&TestCerts>,
    ) -> Result<PgBouncer, HarnessError> {
        let exe = find_pgbouncer()?;
        let dir = self
            .dir
            .join(format!("pgbouncer-{pool_mode}-{}", free_port()?));
        std::fs::create_dir_all(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let port = free_port()?;
        let mut tls = String::new();
        if let Some(certs) = certs {
            copy_private(
                &certs.server_cert(),
                &dir.join("server.crt"),
                self.as_postgres,
            )?;
            copy_private(
                &certs.server_key(),
                &dir.join("server.key"),
                self.as_postgres,
            )?;
            tls = format!(
                "client_tls_sslmode = require\nclient_tls_cert_file = {d}/server.crt\n\
                 client_tls_key_file = {d}/server.key\n",
                d = dir.display()
            );
        }
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={pg}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/userlist.txt\n\
             pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\nserver_reset_query =\n{tls}",
            pg = self.port(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).map_err(|e| err(e.to_string()))?;
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n")
            .map_err(|e| err(e.to_string()))?;
        if self.as_postgres {
            let (uid, gid) = postgres_ids()?;
            for f in ["", "pgbouncer.ini", "userlist.txt"] {
                std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid))
                    .map_err(|e| err(format!("cannot chown: {e}")))?;
            }
        }
        let run = format!(
            "{} '{}' '{}/pgbouncer.ini'",
            if self.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            exe.display(),
            dir.display()
        );
        // The pooler runs in the foreground under a shell that stops it when this
        // process's end of the pipe closes.
        let script = format!("{run} & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid");
        let bouncer = PgBouncer {
            port,
            dir,
            _reaper: Reaper::spawn(&script)?,
        };
        if !wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }) {
            return Err(err(format!(
                "pgbouncer did not start listening:\n{}",
                bouncer.log()
            )));
        }
        Ok(bouncer)
    }
}
