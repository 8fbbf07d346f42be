//! A TLS-only server for tests: certificates made at test time with `openssl`
//! (a CA, a server certificate for `127.0.0.1` and `localhost`, a client
//! certificate, and a second CA that signed none of them), and a cluster with
//! `ssl = on` whose `pg_hba.conf` refuses plaintext TCP clients.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cluster::append;
use crate::host::postgres_ids;
use crate::{err, Cluster, HarnessError};

/// The role that may log in only with the client certificate of
/// [`TestCerts::client_cert`].
pub const CERT_USER: &str = "certuser";

/// Certificates generated for one test process, removed when dropped.
pub struct TestCerts {
    dir: PathBuf,
}

impl fmt::Debug for TestCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCerts").field("dir", &self.dir).finish()
    }
}

impl TestCerts {
    /// Makes a CA, a server certificate it signed (names `localhost` and
    /// `127.0.0.1`), a client certificate for [`CERT_USER`] it signed, and a
    /// second, unrelated CA. ECDSA P-256 keys, valid for two days.
    ///
    /// # Errors
    ///
    /// When `openssl` is missing or fails.
    pub fn generate() -> Result<TestCerts, HarnessError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("pglock-certs-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let certs = TestCerts { dir };
        certs.self_signed_ca("ca", "pglock test CA")?;
        certs.self_signed_ca("wrong-ca", "pglock unrelated CA")?;
        certs.signed(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )?;
        certs.signed("client", CERT_USER, "extendedKeyUsage=clientAuth\n")?;
        Ok(certs)
    }

    /// The CA that signed the server's and the client's certificates (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed nothing the server presents (PEM).
    pub fn wrong_ca(&self) -> PathBuf {
        self.dir.join("wrong-ca.crt")
    }

    /// The server's certificate (PEM).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The client certificate of [`CERT_USER`] (PEM).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }

    /// The client certificate's private key (PEM).
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn self_signed_ca(&self, name: &str, cn: &str) -> Result<(), HarnessError> {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &self.path(&format!("{name}.key")),
            "-out",
            &self.path(&format!("{name}.crt")),
        ])
    }

    fn signed(&self, name: &str, cn: &str, extensions: &str) -> Result<(), HarnessError> {
        let csr = self.path(&format!("{name}.csr"));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &self.path(&format!("{name}.key")),
            "-out",
            &csr,
        ])?;
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"),
        )
        .map_err(|e| err(format!("cannot write {}: {e}", ext.display())))?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.path("ca.crt"),
            "-CAkey",
            &self.path("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext.display().to_string(),
            "-out",
            &self.path(&format!("{name}.crt")),
        ])
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(args: &[&str]) -> Result<(), HarnessError> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            err(format!(
                "cannot run openssl ({e}): install it (`apt-get install -y openssl`)"
            ))
        })?;
    if !out.status.success() {
        return Err(err(format!(
            "openssl {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

impl Cluster {
    /// Starts a cluster that speaks TLS only: `ssl = on` with a certificate
    /// chain made by [`TestCerts::generate`]; TCP clients must use TLS
    /// (`hostssl … trust`, plaintext rejected), [`CERT_USER`] must present its
    /// client certificate (`hostssl … cert`). Observers connect over the Unix
    /// socket ([`Cluster::socket_url`]).
    ///
    /// # Errors
    ///
    /// When the certificates cannot be made or the server does not start.
    pub fn start_tls() -> Result<(Cluster, TestCerts), HarnessError> {
        let certs = TestCerts::generate()?;
        let cluster = Cluster::start_configured(|c| configure_tls(c, &certs))?;
        cluster.psql(&format!("CREATE ROLE {CERT_USER} LOGIN"))?;
        Ok((cluster, certs))
    }
}

fn configure_tls(cluster: &Cluster, certs: &TestCerts) -> Result<(), HarnessError> {
    let data = cluster.data();
    for (from, to) in [
        (certs.server_cert(), "server.crt"),
        (certs.server_key(), "server.key"),
        (certs.ca(), "root.crt"),
    ] {
        copy_private(&from, &data.join(to), cluster.as_postgres)?;
    }
    append(
        &data.join("postgresql.conf"),
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
    )?;
    let hba = data.join("pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "local all all trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n"
        ),
    )
    .map_err(|e| err(format!("cannot write {}: {e}", hba.display())))
}

/// Copies a file into the data directory, readable by its owner only (the
/// server refuses a key others can read), owned by `postgres` when the server
/// runs as that user.
pub(crate) fn copy_private(from: &Path, to: &Path, as_postgres: bool) -> Result<(), HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to).map_err(|e| {
        err(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("cannot chmod {}: {e}", to.display())))?;
    if as_postgres {
        let (uid, gid) = postgres_ids()?;
        std::os::unix::fs::chown(to, Some(uid), Some(gid))
            .map_err(|e| err(format!("cannot chown {}: {e}", to.display())))?;
    }
    Ok(())
}
