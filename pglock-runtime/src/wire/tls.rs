//! TLS for pglock's sessions: PostgreSQL's `sslmode` meanings on rustls, the
//! connector an alias builds once, and what a failed handshake means.
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS, else plaintext (a warning event once per alias, unless it names this machine) | against `sslrootcert` when one is found, else not |
//! | `require` | always | against `sslrootcert` when one is found (as `verify-ca`), else not |
//! | `verify-ca` | always | chain to a trusted CA |
//! | `verify-full` | always | chain to a trusted CA, and the host name |
//!
//! `sslrootcert` is a PEM file, or `system` for the operating system's roots
//! (which only `verify-full` may use, as in libpq). Without it, libpq's default
//! `~/.postgresql/root.crt` is used when it exists.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
#[cfg(feature = "tls")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "tls")]
use std::sync::Arc;

use tokio_postgres::CancelToken;

use crate::error::Error;
use crate::rt;

/// How a connection uses TLS: PostgreSQL's `sslmode`, from the URL
/// (`?sslmode=verify-full`) or [`Config::ssl_mode`](crate::Config::ssl_mode).
///
/// ```
/// use pglock_runtime::SslMode;
///
/// let mode: SslMode = "verify-full".parse()?;
/// assert_eq!(mode, SslMode::VerifyFull);
/// assert_eq!(mode.to_string(), "verify-full");
/// # Ok::<(), pglock_runtime::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, otherwise plaintext. The certificate is
    /// checked only against an `sslrootcert` that is found. The default.
    Prefer,
    /// TLS or nothing; the certificate is checked as for `verify-ca` when an
    /// `sslrootcert` is found, and not at all otherwise.
    Require,
    /// TLS, with a certificate signed by a trusted CA (any host name).
    VerifyCa,
    /// TLS, with a certificate signed by a trusted CA and valid for the host
    /// name connected to.
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<SslMode, Error> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(Error::config(
                    "`sslmode=allow` (plaintext first, TLS only if the server insists) is not \
                     supported: use `prefer` (TLS first) or `disable`",
                ))
            }
            other => {
                return Err(Error::config(format!(
                    "`sslmode={other}` is not an sslmode: use disable, prefer, require, \
                     verify-ca or verify-full"
                )))
            }
        })
    }
}

/// An alias's TLS settings as given: nothing is read from disk until the alias
/// is registered ([`TlsSettings::connector`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// `sslmode`; `None` when not given.
    pub(crate) mode: Option<SslMode>,
    /// `sslrootcert`: a PEM file, or `system`.
    pub(crate) root_cert: Option<PathBuf>,
    /// `sslcert` and `sslkey`: the client's certificate chain and key (PEM).
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
}

/// What the server's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain(Roots),
    ChainAndName(Roots),
}

impl TlsSettings {
    /// The mode in effect: as given, else `verify-full` with `sslrootcert=system`
    /// (as libpq does), else `prefer`.
    pub(crate) fn mode(&self) -> SslMode {
        match self.mode {
            Some(m) => m,
            None if self.system_roots() => SslMode::VerifyFull,
            None => SslMode::Prefer,
        }
    }

    fn system_roots(&self) -> bool {
        self.root_cert.as_deref() == Some(Path::new("system"))
    }

    /// What tokio-postgres is told: it negotiates; pglock's verifier checks.
    pub(crate) fn pg_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode() {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            _ if !cfg!(feature = "tls") => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The settings from a tokio-postgres configuration (which knows only
    /// disable, prefer and require).
    pub(crate) fn from_pg(pg: &tokio_postgres::Config) -> TlsSettings {
        let mode = match pg.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        TlsSettings {
            mode: Some(mode),
            ..TlsSettings::default()
        }
    }

    /// What the settings mean, with libpq's default root file looked up in
    /// `home`.
    fn verify(&self, home: Option<&Path>) -> Result<Verify, Error> {
        let mode = self.mode();
        if mode == SslMode::Disable {
            return Ok(Verify::Nothing);
        }
        let roots = match &self.root_cert {
            Some(_) if self.system_roots() => {
                if mode != SslMode::VerifyFull {
                    return Err(Error::config(format!(
                        "`sslmode={mode}` may not be used with `sslrootcert=system`: the system's \
                         roots vouch for any host name they signed, so only `verify-full` is safe \
                         with them"
                    )));
                }
                Some(Roots::System)
            }
            Some(file) => Some(Roots::File(file.clone())),
            None => home
                .map(|h| h.join(".postgresql").join("root.crt"))
                .filter(|f| f.is_file())
                .map(Roots::File),
        };
        Ok(match (mode, roots) {
            (SslMode::VerifyFull, Some(r)) => Verify::ChainAndName(r),
            (_, Some(r)) => Verify::Chain(r),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(Error::config(format!(
                    "`sslmode={mode}` needs the CA that signed the server's certificate: set \
                     `sslrootcert=<file.pem>` (or `Config::ssl_root_cert`), put it in \
                     ~/.postgresql/root.crt, or use `sslrootcert=system` with verify-full for \
                     the system's roots"
                )))
            }
            (_, None) => Verify::Nothing,
        })
    }

    /// Whether this build can honour the settings: without the `tls` feature,
    /// only `disable` and `prefer` (which then means plaintext).
    pub(crate) fn check_supported(&self) -> Result<(), Error> {
        match self.mode() {
            SslMode::Disable | SslMode::Prefer => Ok(()),
            _ if cfg!(feature = "tls") => Ok(()),
            mode => Err(Error::config(format!(
                "`sslmode={mode}` asks for TLS, and this build of pglock-runtime has none: \
                 enable its `tls` feature (on by default)"
            ))),
        }
    }

    /// Reads the files and builds the connector an alias uses for every session
    /// and cancel request.
    ///
    /// # Errors
    ///
    /// `Configuration`: a mode a build without TLS cannot honour, a file that
    /// cannot be read or holds no certificate/key, a weak mode with system roots.
    ///
    /// `local`: the alias names this machine only, where plaintext under
    /// `prefer` is not warned about.
    pub(crate) fn connector(&self, local: bool) -> Result<Connector, Error> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let verify = self.verify(home.as_deref())?;
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(Error::config(
                "a client certificate needs both `sslcert` and `sslkey` (`Config::ssl_client_cert`)",
            ));
        }
        Connector::build(self, verify, local)
    }
}

/// The TLS connector of one alias: cheap to clone, shared by its pools.
#[derive(Clone)]
pub(crate) struct Connector {
    mode: SslMode,
    #[cfg(feature = "tls")]
    inner: tokio_postgres_rustls::MakeRustlsConnect,
    /// Whether the alias has warned that `prefer` fell back to plaintext.
    #[cfg(feature = "tls")]
    warned_plaintext: Arc<AtomicBool>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[cfg(not(feature = "tls"))]
impl Connector {
    fn build(settings: &TlsSettings, _: Verify, _: bool) -> Result<Connector, Error> {
        settings.check_supported()?;
        Ok(Connector {
            mode: settings.mode(),
        })
    }

    /// A connector for cancel requests on a caller's own client.
    pub(crate) fn lenient() -> Connector {
        Connector {
            mode: SslMode::Prefer,
        }
    }

    /// What to hand `tokio_postgres::Config::connect`, and a probe that says
    /// afterwards whether the session is encrypted.
    pub(crate) fn for_session(&self) -> (tokio_postgres::NoTls, Encrypted) {
        (tokio_postgres::NoTls, Encrypted)
    }

    fn for_cancel(&self) -> tokio_postgres::NoTls {
        tokio_postgres::NoTls
    }
}

/// Says whether a session just opened is encrypted.
#[cfg(not(feature = "tls"))]
pub(crate) struct Encrypted;

#[cfg(not(feature = "tls"))]
impl Encrypted {
    pub(crate) fn get(&self) -> bool {
        false
    }
}

#[cfg(feature = "tls")]
impl Connector {
    fn build(settings: &TlsSettings, verify: Verify, local: bool) -> Result<Connector, Error> {
        let config = rustls_config::client_config(settings, verify)?;
        Ok(Connector {
            mode: settings.mode(),
            inner: tokio_postgres_rustls::MakeRustlsConnect::new(config),
            warned_plaintext: Arc::new(AtomicBool::new(local)),
        })
    }

    /// A connector for cancel requests on a caller's own client, whose TLS
    /// settings pglock does not know: a cancel request carries only the
    /// session's cancel key, so the server's certificate is not checked.
    pub(crate) fn lenient() -> Connector {
        let config = rustls_config::client_config(&TlsSettings::default(), Verify::Nothing)
            .expect("a configuration without files cannot fail");
        Connector {
            mode: SslMode::Prefer,
            inner: tokio_postgres_rustls::MakeRustlsConnect::new(config),
            warned_plaintext: Arc::new(AtomicBool::new(true)),
        }
    }

    /// What to hand `tokio_postgres::Config::connect`, and a probe that says
    /// afterwards whether the session is encrypted (the handshake is started
    /// only when the server agreed to TLS).
    pub(crate) fn for_session(&self) -> (Tracked, Encrypted) {
        let used = Arc::new(AtomicBool::new(false));
        (
            Tracked {
                inner: self.inner.clone(),
                used: used.clone(),
            },
            Encrypted(used),
        )
    }

    fn for_cancel(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        self.inner.clone()
    }
}

impl Connector {
    /// After a session opened (`encrypted`: whether it is): under `prefer`,
    /// warns (once per alias) that the server did not offer TLS.
    pub(crate) fn opened(&self, encrypted: bool, alias: &str) {
        #[cfg(feature = "tls")]
        if self.mode == SslMode::Prefer
            && !encrypted
            && !self.warned_plaintext.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(target: "pglock", alias,
                "the server of alias `{alias}` does not offer TLS: `sslmode=prefer` (the default) \
                 fell back to plaintext; set `sslmode=require` (or stronger) to refuse that, or \
                 `sslmode=disable` to say plaintext is intended");
        }
        #[cfg(not(feature = "tls"))]
        let _ = (encrypted, alias);
    }

    /// Sends a cancel request for whatever `token`'s session is running, in the
    /// background, with this connector's TLS settings.
    pub(crate) fn cancel(&self, token: CancelToken) {
        let tls = self.for_cancel();
        rt::spawn(async move {
            if let Err(e) = token.cancel_query(tls).await {
                tracing::debug!(target: "pglock", error = %e, "cancel request failed");
            }
        });
    }
}

/// The connector handed to one `connect`: records whether TLS was used.
#[cfg(feature = "tls")]
pub(crate) struct Tracked {
    inner: tokio_postgres_rustls::MakeRustlsConnect,
    used: Arc<AtomicBool>,
}

/// Says whether a session just opened is encrypted.
#[cfg(feature = "tls")]
pub(crate) struct Encrypted(Arc<AtomicBool>);

#[cfg(feature = "tls")]
impl Encrypted {
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(feature = "tls")]
impl<S> tokio_postgres::tls::MakeTlsConnect<S> for Tracked
where
    tokio_postgres_rustls::MakeRustlsConnect: tokio_postgres::tls::MakeTlsConnect<S>,
{
    type Stream =
        <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Stream;
    type TlsConnect = TrackedConnect<
        <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::TlsConnect,
    >;
    type Error =
        <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(TrackedConnect {
            inner: self.inner.make_tls_connect(domain)?,
            used: self.used.clone(),
        })
    }
}

/// [`Tracked`] for one host.
#[cfg(feature = "tls")]
pub(crate) struct TrackedConnect<T> {
    inner: T,
    used: Arc<AtomicBool>,
}

#[cfg(feature = "tls")]
impl<S, T: tokio_postgres::tls::TlsConnect<S>> tokio_postgres::tls::TlsConnect<S>
    for TrackedConnect<T>
{
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: S) -> T::Future {
        // tokio-postgres starts the handshake only after the server said yes.
        self.used.store(true, Ordering::Relaxed);
        self.inner.connect(stream)
    }
}

/// What a failed connection's cause means for TLS, in words a person can act
/// on; `None` when the cause is not about TLS.
pub(crate) fn explain(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        // rustls's error arrives inside an `io::Error`, whose `source()` skips it.
        #[cfg(feature = "tls")]
        if let Some(r) = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        }) {
            return Some(rustls_config::explain(r));
        }
        let text = c.to_string();
        if text.contains("server does not support TLS") {
            return Some(
                "the server does not offer TLS (its `ssl` setting is off) and the sslmode \
                 requires it: enable TLS on the server, or use `sslmode=prefer`/`disable`"
                    .to_owned(),
            );
        }
        cause = c.source();
    }
    None
}

#[cfg(feature = "tls")]
mod rustls_config {
    //! The rustls side: roots, client certificates, and the two verifiers
    //! libpq has that rustls does not (no check; chain without host name).

    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::server::ParsedCertificate;
    use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

    use super::{Roots, TlsSettings, Verify};
    use crate::error::Error;

    pub(super) fn client_config(
        settings: &TlsSettings,
        verify: Verify,
    ) -> Result<ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS setup failed: {e}")).with_source(e))?;
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::Nothing => Arc::new(AnyCertificate(provider)),
            Verify::Chain(roots) => Arc::new(ChainOnly {
                roots: Arc::new(load_roots(&roots)?),
                provider,
            }),
            Verify::ChainAndName(roots) => {
                WebPkiServerVerifier::builder_with_provider(Arc::new(load_roots(&roots)?), provider)
                    .build()
                    .map_err(|e| Error::config(format!("TLS setup failed: {e}")).with_source(e))?
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "sslcert")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    Error::config(format!(
                        "cannot read the client key `sslkey={}`: {e}",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::config(format!(
                        "the client certificate `sslcert={}` and key do not go together: {e}",
                        cert.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        // PostgreSQL 17 checks the protocol name; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(config)
    }

    fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| Error::config(format!("cannot read `{what}={}`: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::config(format!(
                "`{what}={}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                path.display()
            )));
        }
        Ok(certs)
    }

    fn load_roots(roots: &Roots) -> Result<RootCertStore, Error> {
        let mut store = RootCertStore::empty();
        match roots {
            Roots::File(path) => {
                for cert in read_certs(path, "sslrootcert")? {
                    store.add(cert).map_err(|e| {
                        Error::config(format!(
                            "`sslrootcert={}` holds a certificate that is not a CA: {e}",
                            path.display()
                        ))
                    })?;
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err(Error::config(format!(
                        "`sslrootcert=system`: no trusted root certificates were found on this \
                         system{}; install them (Debian: `ca-certificates`) or name a file",
                        found
                            .errors
                            .first()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    )));
                }
            }
        }
        Ok(store)
    }

    pub(super) fn explain(e: &rustls::Error) -> String {
        match e {
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => format!(
                "the server's certificate is not signed by a CA in `sslrootcert` ({e}): point \
                 `sslrootcert` at the CA that signed it"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "the server's certificate is not valid for the host name connected to ({e}): \
                 `sslmode=verify-full` checks it; connect by a name the certificate lists, or \
                 use `verify-ca` to check the CA only"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => format!("the server's certificate has expired ({e})"),
            rustls::Error::AlertReceived(alert) => format!(
                "the server refused the TLS handshake ({alert:?}): it may require a client \
                 certificate (`sslcert`/`sslkey`) or refuse the one given"
            ),
            other => format!("TLS handshake failed: {other}"),
        }
    }

    /// `prefer`/`require` without roots: encrypted, the certificate unchecked
    /// (the handshake's own signatures still are).
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// `verify-ca`: the chain to a trusted root, any host name.
    #[derive(Debug)]
    struct ChainOnly {
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                &self.roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
            Ok(ServerCertVerified::assertion())
        }

        // The handshake's own signatures are checked as for any certificate.
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            AnyCertificate(self.provider.clone()).verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            AnyCertificate(self.provider.clone()).verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            AnyCertificate(self.provider.clone()).supported_verify_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: Option<SslMode>, root: Option<&str>) -> TlsSettings {
        TlsSettings {
            mode,
            root_cert: root.map(PathBuf::from),
            ..TlsSettings::default()
        }
    }

    #[test]
    fn modes_mean_what_libpq_means() {
        let none = Path::new("/nonexistent-home");
        assert_eq!(settings(None, None).mode(), SslMode::Prefer);
        assert_eq!(settings(None, Some("system")).mode(), SslMode::VerifyFull);
        assert_eq!(
            settings(Some(SslMode::Require), None)
                .verify(Some(none))
                .unwrap(),
            Verify::Nothing
        );
        assert_eq!(
            settings(Some(SslMode::Require), Some("/ca.pem"))
                .verify(Some(none))
                .unwrap(),
            Verify::Chain(Roots::File("/ca.pem".into()))
        );
        assert_eq!(
            settings(Some(SslMode::VerifyFull), Some("system"))
                .verify(None)
                .unwrap(),
            Verify::ChainAndName(Roots::System)
        );
        for weak in [SslMode::Prefer, SslMode::Require, SslMode::VerifyCa] {
            let e = settings(Some(weak), Some("system"))
                .verify(None)
                .unwrap_err();
            assert!(e.to_string().contains("only `verify-full`"), "{e}");
        }
        let e = settings(Some(SslMode::VerifyCa), None)
            .verify(Some(none))
            .unwrap_err();
        assert!(e.to_string().contains("set `sslrootcert="), "{e}");
    }

    #[test]
    fn the_default_root_file_is_used_when_it_exists() {
        let home = std::env::temp_dir().join(format!("pglock-home-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".postgresql")).unwrap();
        let root = home.join(".postgresql").join("root.crt");
        std::fs::write(&root, "").unwrap();
        assert_eq!(
            settings(Some(SslMode::Require), None)
                .verify(Some(&home))
                .unwrap(),
            Verify::Chain(Roots::File(root.clone()))
        );
        assert_eq!(
            settings(Some(SslMode::VerifyFull), None)
                .verify(Some(&home))
                .unwrap(),
            Verify::ChainAndName(Roots::File(root))
        );
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn a_build_without_tls_refuses_modes_that_need_it() {
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            let e = settings(Some(mode), Some("/ca.pem"))
                .check_supported()
                .unwrap_err();
            assert!(e.to_string().contains("enable its `tls` feature"), "{e}");
        }
        assert!(settings(Some(SslMode::Prefer), None)
            .check_supported()
            .is_ok());
        assert_eq!(
            settings(Some(SslMode::Prefer), None).pg_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn sslmode_parses_and_refuses_what_it_cannot_do() {
        for m in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(m.parse::<SslMode>().unwrap().to_string(), m);
        }
        let allow = "allow".parse::<SslMode>().unwrap_err();
        assert!(allow.to_string().contains("not supported"), "{allow}");
        let typo = "verify_full".parse::<SslMode>().unwrap_err();
        assert!(typo.to_string().contains("verify-full"), "{typo}");
    }
}
