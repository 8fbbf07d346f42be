//! Throw-away PostgreSQL clusters for tests, examples and benchmarks.
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

use std::fmt;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// A shell that runs `script`'s clean-up when the pipe to it closes: when the
/// owner is dropped, or when this process exits however it exits.
struct Reaper(Option<(Child, ChildStdin)>);

impl Reaper {
    /// Runs `sh -c script` with a pipe as stdin; the script decides what to do when
    /// the pipe closes (`cat >/dev/null` returns then).
    fn spawn(script: &str) -> Result<Reaper, HarnessError> {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("cannot start a helper shell: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        Ok(Reaper(Some((child, stdin))))
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.0.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

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
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

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

/// Options for [`Cluster::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra `postgresql.conf` settings, as `(name, value)` pairs.
    pub settings: Vec<(String, String)>,
}

/// A PostgreSQL cluster this process started, listening on a loopback port.
///
/// Dropping it stops the server and removes its data directory.
pub struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    log: PathBuf,
    // Stops the server and removes the directory on drop or process exit.
    reaper: Option<Reaper>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Initialises and starts a new cluster with the default options.
    ///
    /// # Errors
    ///
    /// When the PostgreSQL binaries cannot be found, or `initdb` or `pg_ctl` fail.
    pub fn start() -> Result<Cluster, HarnessError> {
        Cluster::start_with(&ClusterOptions::default())
    }

    /// Initialises and starts a new cluster.
    ///
    /// # Errors
    ///
    /// When the PostgreSQL binaries cannot be found, or `initdb` or `pg_ctl` fail.
    pub fn start_with(options: &ClusterOptions) -> Result<Cluster, HarnessError> {
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
        for (name, value) in base_settings().into_iter().chain(
            options
                .settings
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        ) {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        append(&cluster.data().join("postgresql.conf"), &conf)?;
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
        let exe = find_pgbouncer()?;
        let dir = self
            .dir
            .join(format!("pgbouncer-{pool_mode}-{}", free_port()?));
        std::fs::create_dir_all(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let port = free_port()?;
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={pg}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/userlist.txt\n\
             pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\nserver_reset_query =\n",
            pg = self.port,
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
        };
        cluster.reaper = Some(cluster.reaper_for_dir()?);
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq URL for the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// A libpq URL for another database of this cluster.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
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

fn append(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("no free loopback port: {e}")))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_ids() -> Result<(u32, u32), HarnessError> {
    let id = |flag: &str| -> Result<u32, HarnessError> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| err(format!("cannot run id: {e}")))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                err(
                    "running as root, but there is no `postgres` user to run the server as \
                 (PostgreSQL refuses to run as root): install the Debian package \
                 `postgresql` or create the user",
                )
            })
    };
    Ok((id("-u")?, id("-g")?))
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

/// Waits until `f` returns true, polling every 20 ms for at most `limit`.
/// Returns whether it did.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
