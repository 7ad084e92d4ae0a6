//! TLS for listeners: the `tls` table of a `[[listeners]]` entry, the
//! rustls server configuration built from it, and the handshake.
//!
//! ```toml
//! [[listeners]]
//! bind = "0.0.0.0:8883"
//! tls = { cert = "certs/server.crt", key = "certs/server.key" }  # PEM, full chain
//! # optional: client_ca = "certs/ca.crt", require_client_cert = true,
//! #           identity_as_username = true
//! ```
//!
//! TLS 1.2 and 1.3 with rustls' ring provider. Files are read when the
//! listener starts and again on SIGHUP ([`TlsListener::reload`]); a
//! failed reload keeps the previous configuration. The handshake
//! ([`TlsListener::accept`]) runs inside the connection's own task under a
//! timeout, never in the accept loop, so a slow or silent client holds up
//! nobody else.
//!
//! With `client_ca`, client certificates are verified against it
//! (required with `require_client_cert`, else optional); expired
//! certificates and certificates from another CA fail the handshake. With
//! `identity_as_username`, the common name of the client certificate
//! becomes the MQTT user name ([`PeerIdentity::common_name`]).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The `tls` table of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain, PEM, leaf first. Required.
    pub cert: PathBuf,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1). Required.
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    /// Default: none, client certificates are not asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate. Default: false.
    /// Needs `client_ca`.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Use the client certificate's common name as the user name (no
    /// password check). Default: false. Needs `client_ca`.
    #[serde(default)]
    pub identity_as_username: bool,
}

/// Why TLS could not be set up or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read TLS {what} file {}: {source}", path.display())]
    Read {
        /// Which file: "certificate", "key" or "client CA".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds no PEM item of the wanted kind.
    #[error("no {what} found in {} (expected PEM)", path.display())]
    Missing {
        /// "certificate", "private key" or "CA certificate".
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The private key does not belong to the certificate.
    #[error("private key {} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The private key is of a kind rustls cannot use, or malformed.
    #[error("unusable private key {}: {reason}", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// A client CA certificate could not be used.
    #[error("unusable client CA {}: {reason}", path.display())]
    BadClientCa {
        /// The CA file.
        path: PathBuf,
        /// The reason.
        reason: String,
    },
    /// The options contradict each other.
    #[error("TLS option {0} needs client_ca")]
    NeedsClientCa(&'static str),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// The handshake failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// What the handshake told about the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Whether the client presented a certificate (verified, else the
    /// handshake would have failed).
    pub has_certificate: bool,
    /// The common name of the client certificate's subject.
    pub common_name: Option<String>,
}

/// A listener's TLS state: its configuration and the current rustls
/// server configuration, swapped whole on reload.
#[derive(Debug)]
pub struct TlsListener {
    config: TlsConfig,
    current: ArcSwap<ServerConfig>,
}

impl TlsListener {
    /// Reads the files `config` names and builds the rustls configuration;
    /// every problem is a start-up error that names the file.
    pub fn load(config: TlsConfig) -> Result<TlsListener, TlsError> {
        let server = server_config(&config)?;
        Ok(TlsListener {
            config,
            current: ArcSwap::from(server),
        })
    }

    /// Re-reads the files (SIGHUP). New handshakes use the new
    /// certificates; established connections keep theirs. On error
    /// nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let server = server_config(&self.config)?;
        self.current.store(server);
        Ok(())
    }

    /// The configuration this listener was loaded from.
    pub fn config(&self) -> &TlsConfig {
        &self.config
    }

    /// Whether the client certificate's CN is the user name.
    pub fn identity_as_username(&self) -> bool {
        self.config.identity_as_username
    }

    /// An acceptor for the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// A few words for the start-up line, e.g. `TLS, client certificate
    /// required`.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut s = String::from("TLS");
        if c.require_client_cert {
            s.push_str(", client certificate required");
        } else if c.client_ca.is_some() {
            s.push_str(", client certificate optional");
        }
        if c.identity_as_username {
            s.push_str(", certificate CN as user name");
        }
        s
    }

    /// Runs the server handshake on `io`, giving up after `timeout`.
    /// Call it inside the connection's task, not in the accept loop.
    pub async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> Result<(TlsStream<IO>, PeerIdentity), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = tokio::time::timeout(timeout, self.acceptor().accept(io))
            .await
            .map_err(|_| TlsError::HandshakeTimeout)?
            .map_err(TlsError::Handshake)?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        let identity = PeerIdentity {
            has_certificate: leaf.is_some(),
            common_name: leaf.and_then(common_name),
        };
        Ok((stream, identity))
    }
}

/// The crypto provider: ring, chosen explicitly so no process-wide
/// default is needed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls server configuration for `config`.
pub fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    if config.client_ca.is_none() {
        if config.require_client_cert {
            return Err(TlsError::NeedsClientCa("require_client_cert"));
        }
        if config.identity_as_username {
            return Err(TlsError::NeedsClientCa("identity_as_username"));
        }
    }
    let certs = load_certs(&config.cert, "certificate")?;
    let key = load_key(&config.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in load_certs(path, "CA certificate")? {
                roots.add(ca).map_err(|e| TlsError::BadClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match config.require_client_cert {
                true => verifier,
                false => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|e| TlsError::BadClientCa {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let server = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: config.cert.clone(),
                key: config.key.clone(),
            }
        }
        other => TlsError::BadKey {
            path: config.key.clone(),
            reason: other.to_string(),
        },
    })?;
    Ok(Arc::new(server))
}

fn open(path: &Path, what: &'static str) -> Result<BufReader<File>, TlsError> {
    let read_err = |source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    File::open(path).map(BufReader::new).map_err(read_err)
}

/// Every certificate in a PEM file; at least one.
fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader = open(path, what)?;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader = open(path, "key")?;
    rustls_pemfile::private_key(&mut reader)
        .map_err(|source| TlsError::Read {
            what: "key",
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::Missing {
            what: "private key",
            path: path.to_owned(),
        })
}

/// The first common name (CN) of a DER certificate's subject; `None` if it
/// has none, it is not UTF-8, or the certificate does not parse.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn new_ca(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-signed");
        Ca { cert, key }
    }

    /// A leaf signed by `ca`: (certificate PEM, key PEM).
    fn leaf(ca: &Ca, cn: &str, client: bool, expired: bool) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    struct Setup {
        dir: tempfile::TempDir,
        ca: Ca,
    }

    impl Setup {
        fn new() -> Setup {
            let setup = Setup {
                dir: tempfile::tempdir().expect("tempdir"),
                ca: new_ca("Midge Test CA"),
            };
            let (cert, key) = leaf(&setup.ca, "localhost", false, false);
            // Full chain: leaf then CA.
            setup.write("server.crt", &format!("{cert}{}", setup.ca.cert.pem()));
            setup.write("server.key", &key);
            setup.write("ca.crt", &setup.ca.cert.pem());
            setup
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.path(name), text).expect("write");
        }

        fn config(&self, client_ca: bool, require: bool) -> TlsConfig {
            TlsConfig {
                cert: self.path("server.crt"),
                key: self.path("server.key"),
                client_ca: client_ca.then(|| self.path("ca.crt")),
                require_client_cert: require,
                identity_as_username: false,
            }
        }
    }

    fn client_config(
        ca_pem: &str,
        version: &'static rustls::SupportedProtocolVersion,
        identity: Option<(String, String)>,
    ) -> rustls::ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots);
        match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = rustls_pemfile::certs(&mut cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain");
                let key = rustls_pemfile::private_key(&mut key.as_bytes())
                    .expect("pem")
                    .expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
        }
    }

    /// Runs both ends of a handshake over an in-memory pipe; returns the
    /// server's result, and the protocol version it negotiated.
    async fn handshake(
        listener: &TlsListener,
        client: rustls::ClientConfig,
    ) -> Result<(PeerIdentity, rustls::ProtocolVersion), TlsError> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let client_task = tokio::spawn(async move {
            let name = ServerName::try_from("localhost").expect("name");
            let mut tls = connector.connect(name, client_io).await?;
            tls.write_all(b"ping").await?;
            tls.flush().await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        });
        let server = listener.accept(server_io, Duration::from_secs(10)).await;
        let result = match server {
            Ok((mut tls, identity)) => {
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf)
                    .await
                    .map_err(TlsError::Handshake)?;
                assert_eq!(&buf, b"ping");
                tls.write_all(b"pong").await.map_err(TlsError::Handshake)?;
                tls.flush().await.map_err(TlsError::Handshake)?;
                let version = tls.get_ref().1.protocol_version().expect("version");
                let reply = client_task.await.expect("join").expect("client io");
                assert_eq!(&reply, b"pong");
                Ok((identity, version))
            }
            Err(e) => Err(e),
        };
        result
    }

    #[tokio::test]
    async fn handshakes_on_tls_1_2_and_1_3() {
        let setup = Setup::new();
        let listener = TlsListener::load(setup.config(false, false)).expect("loads");
        let ca = setup.ca.cert.pem();
        for (version, expected) in [
            (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
            (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        ] {
            let (identity, negotiated) = handshake(&listener, client_config(&ca, version, None))
                .await
                .expect("handshake");
            assert_eq!(negotiated, expected);
            assert_eq!(identity, PeerIdentity::default());
        }
        assert_eq!(listener.describe(), "TLS");
    }

    #[tokio::test]
    async fn required_client_certificate_is_verified() {
        let setup = Setup::new();
        let listener = TlsListener::load(setup.config(true, true)).expect("loads");
        assert_eq!(listener.describe(), "TLS, client certificate required");
        let ca = setup.ca.cert.pem();
        let v13 = &rustls::version::TLS13;

        let good = leaf(&setup.ca, "device-7", true, false);
        let (identity, _) = handshake(&listener, client_config(&ca, v13, Some(good)))
            .await
            .expect("valid client certificate");
        assert!(identity.has_certificate);
        assert_eq!(identity.common_name.as_deref(), Some("device-7"));

        let none = handshake(&listener, client_config(&ca, v13, None)).await;
        assert!(matches!(none, Err(TlsError::Handshake(_))), "{none:?}");

        let expired = leaf(&setup.ca, "old", true, true);
        let expired = handshake(&listener, client_config(&ca, v13, Some(expired))).await;
        assert!(
            matches!(expired, Err(TlsError::Handshake(_))),
            "{expired:?}"
        );

        let stranger = leaf(&new_ca("Other CA"), "device-7", true, false);
        let wrong_ca = handshake(&listener, client_config(&ca, v13, Some(stranger))).await;
        assert!(
            matches!(wrong_ca, Err(TlsError::Handshake(_))),
            "{wrong_ca:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let setup = Setup::new();
        let listener = TlsListener::load(setup.config(false, false)).expect("loads");
        let (_client_io, server_io) = tokio::io::duplex(1024);
        let result = listener.accept(server_io, Duration::from_millis(50)).await;
        assert!(
            matches!(result, Err(TlsError::HandshakeTimeout)),
            "{result:?}"
        );
    }

    #[test]
    fn start_up_errors_name_the_file() {
        let setup = Setup::new();
        let good = setup.config(false, false);
        let err = |config: TlsConfig| {
            TlsListener::load(config)
                .expect_err("must fail")
                .to_string()
        };

        let mut c = good.clone();
        c.cert = setup.path("missing.crt");
        let msg = err(c);
        assert!(
            msg.contains("cannot read TLS certificate file") && msg.contains("missing.crt"),
            "{msg}"
        );

        setup.write("empty.pem", "not a pem file\n");
        let mut c = good.clone();
        c.cert = setup.path("empty.pem");
        assert!(err(c).starts_with("no certificate found in"));
        let mut c = good.clone();
        c.key = setup.path("empty.pem");
        assert!(err(c).starts_with("no private key found in"));
        let mut c = good.clone();
        c.client_ca = Some(setup.path("empty.pem"));
        assert!(err(c).starts_with("no CA certificate found in"));

        let (_, other_key) = leaf(&setup.ca, "localhost", false, false);
        setup.write("other.key", &other_key);
        let mut c = good.clone();
        c.key = setup.path("other.key");
        let msg = err(c);
        assert!(msg.contains("does not match certificate"), "{msg}");
        assert!(
            msg.contains("other.key") && msg.contains("server.crt"),
            "{msg}"
        );

        let mut c = good.clone();
        c.require_client_cert = true;
        assert_eq!(err(c), "TLS option require_client_cert needs client_ca");
        let mut c = good;
        c.identity_as_username = true;
        assert_eq!(err(c), "TLS option identity_as_username needs client_ca");
    }

    #[tokio::test]
    async fn reload_swaps_certificates_and_keeps_them_on_failure() {
        let setup = Setup::new();
        let listener = TlsListener::load(setup.config(false, false)).expect("loads");
        let old_ca = setup.ca.cert.pem();
        let v13 = &rustls::version::TLS13;

        // A new CA and server certificate; the old client trust fails.
        let fresh = new_ca("New CA");
        let (cert, key) = leaf(&fresh, "localhost", false, false);
        setup.write("server.crt", &cert);
        setup.write("server.key", &key);
        listener.reload().expect("reloads");
        assert!(handshake(&listener, client_config(&old_ca, v13, None))
            .await
            .is_err());
        handshake(&listener, client_config(&fresh.cert.pem(), v13, None))
            .await
            .expect("new certificate served");

        // A broken key: reload fails, the last good configuration stays.
        setup.write("server.key", "garbage");
        assert!(listener.reload().is_err());
        handshake(&listener, client_config(&fresh.cert.pem(), v13, None))
            .await
            .expect("still served");
    }
}
