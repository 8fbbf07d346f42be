//! A throw-away PostgreSQL cluster: `initdb` into a temporary directory, a server
//! on a free loopback port with durability off, stopped and removed by a reaper.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::host::{free_port, is_root, postgres_ids};
use crate::reaper::Reaper;
use crate::{err, HarnessError};

/// A PostgreSQL cluster this process started, listening on a loopback port.
///
/// Dropping it stops the server and removes its data directory.
pub struct Cluster {
    bindir: PathBuf,
    pub(crate) dir: PathBuf,
    port: u16,
    pub(crate) as_postgres: bool,
    log: PathBuf,
    // Stops the server and removes the directory on drop or process exit.
    reaper: Option<Reaper>,
    // Whether `APP_ROLE` has been created.
    app_role: std::sync::OnceLock<()>,
}

/// An ordinary role (not a superuser) that [`Cluster::app_url`] logs in as.
pub const APP_ROLE: &str = "pglock_app";

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Initialises and starts a new cluster.
    ///
    /// # Errors
    ///
    /// When the PostgreSQL binaries cannot be found, or `initdb` or `pg_ctl` fail.
    pub fn start() -> Result<Cluster, HarnessError> {
        Cluster::start_configured(|_| Ok(()))
    }

    /// Initialises a cluster, lets `configure` change its data directory, and
    /// starts it.
    pub(crate) fn start_configured(
        configure: impl FnOnce(&Cluster) -> Result<(), HarnessError>,
    ) -> Result<Cluster, HarnessError> {
        let bindir = find_bindir()?;
        let mut cluster = Cluster::create_dir(bindir)?;
        cluster.run_pg(
            "initdb",
            &[
                "-D",
                cluster.data().to_str().unwrap(),
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
        )?;
        let mut conf = String::from("\n# pglock-testkit\n");
        for (name, value) in base_settings() {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        append(&cluster.data().join("postgresql.conf"), &conf)?;
        configure(&cluster)?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Starts a hot standby that streams from this cluster (`pg_basebackup -R`).
    ///
    /// # Errors
    ///
    /// When the base backup or the start of the standby fails.
    pub fn start_standby(&self) -> Result<Cluster, HarnessError> {
        let mut standby = Cluster::create_dir(self.bindir.clone())?;
        standby.run_pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                standby.data().to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        )?;
        standby.start_server()?;
        Ok(standby)
    }

    fn create_dir(bindir: PathBuf) -> Result<Cluster, HarnessError> {
        let as_postgres = is_root();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("pglock-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        if as_postgres {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| err(format!("cannot chown {} to postgres: {e}", dir.display())))?;
        }
        let log = dir.join("server.log");
        let mut cluster = Cluster {
            bindir,
            dir,
            port: 0,
            as_postgres,
            log,
            reaper: None,
            app_role: std::sync::OnceLock::new(),
        };
        cluster.reaper = Some(cluster.reaper_for_dir()?);
        Ok(cluster)
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq URL for the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A libpq URL for the `postgres` database as [`APP_ROLE`], an ordinary
    /// role (no superuser, no extra grants) that may use every table the
    /// `postgres` user creates in `public` from then on: a session of the
    /// application, as opposed to an administrator's. The role is created on
    /// first use.
    ///
    /// # Panics
    ///
    /// When the role cannot be created.
    pub fn app_url(&self) -> String {
        self.app_role.get_or_init(|| {
            self.psql(&format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') \
                 THEN CREATE ROLE {APP_ROLE} LOGIN; END IF; END $$; \
                 GRANT CREATE ON SCHEMA public TO {APP_ROLE}; \
                 ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public \
                 GRANT ALL ON TABLES TO {APP_ROLE}"
            ))
            .unwrap_or_else(|e| panic!("cannot create {APP_ROLE}: {e}"));
        });
        format!("postgres://{APP_ROLE}@127.0.0.1:{}/postgres", self.port)
    }

    /// A key=value connection string for the `postgres` database as the
    /// `postgres` superuser over the server's Unix socket: no TLS, whatever the
    /// server's `pg_hba.conf` asks of TCP clients (for observers of a TLS-only
    /// server).
    pub fn socket_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// Runs SQL through `psql` against this cluster (setup that must not depend on
    /// the code under test, such as creating a database).
    ///
    /// # Errors
    ///
    /// When `psql` fails; the error carries its output.
    pub fn psql(&self, sql: &str) -> Result<String, HarnessError> {
        let psql = Some(self.bindir.join("psql"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let out = Command::new(psql)
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url())
            .args(["-c", sql])
            .output()
            .map_err(|e| err(format!("cannot run psql: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Puts `lines` at the top of `pg_hba.conf` (first match wins) and reloads the
    /// server, for tests of authentication failures.
    ///
    /// # Errors
    ///
    /// When the file cannot be written or the reload fails.
    pub fn prepend_hba(&self, lines: &str) -> Result<(), HarnessError> {
        let path = self.data().join("pg_hba.conf");
        let old = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        std::fs::write(&path, format!("{lines}\n{old}"))
            .map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
        self.run_pg("pg_ctl", &["-D", self.data().to_str().unwrap(), "reload"])
            .map(drop)
    }

    /// Stops the server (fast shutdown: sessions are disconnected).
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` fails.
    pub fn stop(&self) -> Result<(), HarnessError> {
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
        .map(drop)
    }

    /// Starts the server again on the same port after [`Cluster::stop`].
    ///
    /// # Errors
    ///
    /// When `pg_ctl start` fails.
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.pg_ctl_start(self.port)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn start_server(&mut self) -> Result<(), HarnessError> {
        // Another process may take the free port before the server binds it: retry.
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            match self.pg_ctl_start(port) {
                Ok(()) => {
                    self.port = port;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| err("could not start the server")))
    }

    fn pg_ctl_start(&self, port: u16) -> Result<(), HarnessError> {
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.dir.display()
        );
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                self.log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(drop)
        .map_err(|e| err(format!("{e}\nserver log:\n{}", self.log())))
    }

    fn run_pg(&self, program: &str, args: &[&str]) -> Result<String, HarnessError> {
        let path = self.bindir.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args).current_dir(&self.dir).stdin(Stdio::null());
        let out = cmd
            .output()
            .map_err(|e| err(format!("cannot run {}: {e}", path.display())))?;
        if !out.status.success() {
            return Err(err(format!(
                "{program} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn reaper_for_dir(&self) -> Result<Reaper, HarnessError> {
        let pg_ctl = self.bindir.join("pg_ctl");
        let stop = format!(
            "{} '{}' -D '{}' -m immediate -w stop",
            if self.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            pg_ctl.display(),
            self.data().display()
        );
        let script = format!(
            "cat >/dev/null; [ -f '{data}/postmaster.pid' ] && {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            data = self.data().display(),
            dir = self.dir.display()
        );
        Reaper::spawn(&script)
    }
}

fn base_settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("max_connections", "300"),
        ("shared_buffers", "32MB"),
        ("max_locks_per_transaction", "128"),
        ("wal_level", "replica"),
        ("max_wal_senders", "5"),
        ("hot_standby", "on"),
        ("log_min_messages", "warning"),
    ]
}

pub(crate) fn append(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// Finds the folder of `initdb` and `pg_ctl`: `PGLOCK_PG_BINDIR`, then
/// `pg_config --bindir`, then `PATH`, then `/usr/lib/postgresql/*/bin`.
fn find_bindir() -> Result<PathBuf, HarnessError> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(d) = std::env::var("PGLOCK_PG_BINDIR") {
        let d = PathBuf::from(d);
        if has(&d) {
            return Ok(d);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&d) {
            return Ok(d);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                // Prefer the real folder (Debian's PATH entries are wrappers).
                return Ok(std::fs::canonicalize(d.join("pg_ctl"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|p| has(p))
                    .unwrap_or(d));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|d| has(d))
            .collect();
        dirs.sort();
        if let Some(d) = dirs.pop() {
            return Ok(d);
        }
    }
    Err(err(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH, by \
         `pg_config --bindir` or under /usr/lib/postgresql: install them \
         (`apt-get install -y postgresql`), set PGLOCK_PG_BINDIR to their folder, or set \
         DATABASE_URL to use an existing server",
    ))
}
