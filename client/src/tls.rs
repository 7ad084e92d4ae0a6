//! TLS with rustls: [`TlsOptions`], turning them into a `rustls::ClientConfig`
//! (platform roots by default, a CA file, a client certificate, the insecure
//! modes), and turning rustls failures into [`TlsError`]s that say what is
//! wrong in words.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::TlsError;

/// Where PEM data comes from: a file, or bytes given directly.
#[derive(Clone)]
enum PemSource {
    File(PathBuf),
    Bytes(Arc<[u8]>),
}

impl PemSource {
    fn describe(&self, what: &str) -> String {
        match self {
            PemSource::File(path) => format!("{what} {}", path.display()),
            PemSource::Bytes(_) => format!("{what} (in memory)"),
        }
    }

    fn read(&self) -> Result<Vec<u8>, TlsError> {
        match self {
            PemSource::File(path) => std::fs::read(path).map_err(|source| TlsError::ReadFile {
                path: path.clone(),
                source,
            }),
            PemSource::Bytes(bytes) => Ok(bytes.to_vec()),
        }
    }
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(path) => write!(f, "{}", path.display()),
            PemSource::Bytes(b) => write!(f, "<{} bytes of PEM>", b.len()),
        }
    }
}

/// TLS settings for [`ClientBuilder::tls`](crate::ClientBuilder::tls).
///
/// By default the server is verified against the platform's root
/// certificates (via `rustls-native-certs`) and the host name, which may be
/// an IP address. A custom CA replaces the platform roots unless
/// [`platform_roots(true)`](Self::platform_roots) keeps them.
#[derive(Clone, Default)]
pub struct TlsOptions {
    ca: Vec<PemSource>,
    platform_roots: Option<bool>,
    client_cert: Option<(PemSource, PemSource)>,
    server_name: Option<String>,
    sni: Option<bool>,
    skip_hostname_verification: bool,
    insecure: bool,
    alpn: Vec<Vec<u8>>,
    config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca", &self.ca)
            .field("platform_roots", &self.platform_roots)
            .field("client_cert", &self.client_cert.as_ref().map(|(c, _)| c))
            .field("server_name", &self.server_name)
            .field("sni", &self.sni)
            .field(
                "skip_hostname_verification",
                &self.skip_hostname_verification,
            )
            .field("insecure", &self.insecure)
            .field("custom_config", &self.config.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// Platform roots, full verification.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Trusts the CA certificates in this PEM file (like `--cafile`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca.push(PemSource::File(path.into()));
        self
    }

    /// Trusts the CA certificates in this PEM text.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca.push(PemSource::Bytes(pem.into().into()));
        self
    }

    /// Whether to trust the platform's root certificates too. Default: yes
    /// unless a CA file or PEM is given.
    pub fn platform_roots(mut self, enabled: bool) -> Self {
        self.platform_roots = Some(enabled);
        self
    }

    /// Presents this client certificate chain and key (mutual TLS); both are
    /// PEM files. The key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub fn client_auth_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((PemSource::File(cert.into()), PemSource::File(key.into())));
        self
    }

    /// Presents this client certificate chain and key, given as PEM text.
    pub fn client_auth_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_cert = Some((
            PemSource::Bytes(cert.into().into()),
            PemSource::Bytes(key.into().into()),
        ));
        self
    }

    /// Verifies the certificate against (and sends as SNI) this name instead
    /// of the host connected to.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether to send SNI (default: yes; it is never sent for IP addresses).
    pub fn sni(mut self, enabled: bool) -> Self {
        self.sni = Some(enabled);
        self
    }

    /// Checks the certificate chain but not the name in it (mosquitto's
    /// `--insecure`). For testing only.
    pub fn skip_hostname_verification(mut self, skip: bool) -> Self {
        self.skip_hostname_verification = skip;
        self
    }

    /// Accepts any server certificate at all: no chain, no name, no expiry
    /// check. The connection is encrypted but not authenticated. For
    /// testing only.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// ALPN protocols to offer.
    pub fn alpn(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Uses a ready-made rustls configuration; the other settings except
    /// [`server_name`](Self::server_name) are then ignored.
    pub fn rustls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.config = Some(config);
        self
    }

    /// The name to verify and send as SNI for a connection to `host`.
    pub(crate) fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::InvalidServerName(name.to_string()))
    }

    /// Builds the rustls configuration.
    pub(crate) fn build(&self) -> Result<Arc<ClientConfig>, TlsError> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Other(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure {
            Arc::new(AcceptAnyCertificate { provider })
        } else {
            let roots = Arc::new(self.root_store()?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Other(e.to_string()))?;
            Arc::new(Verifier {
                inner: webpki,
                skip_hostname: self.skip_hostname_verification,
            })
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = load_certs(cert, "client certificate")?;
                let key = load_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::ClientCertificate(e.to_string()))?
            }
        };
        config.alpn_protocols = self.alpn.clone();
        if let Some(sni) = self.sni {
            config.enable_sni = sni;
        }
        Ok(Arc::new(config))
    }

    fn root_store(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for source in &self.ca {
            let what = source.describe("CA file");
            for cert in load_certs(source, "CA file")? {
                roots.add(cert).map_err(|e| TlsError::BadCaCertificate {
                    what: what.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        if self.platform_roots.unwrap_or(self.ca.is_empty()) {
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 && roots.is_empty() {
                let why = native
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no certificates found".to_string());
                return Err(TlsError::NoRootCertificates(why));
            }
        }
        Ok(roots)
    }
}

fn load_certs(source: &PemSource, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = source.read()?;
    let what = source.describe(what);
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what: what.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn load_key(source: &PemSource) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = source.read()?;
    let what = source.describe("client key");
    match rustls_pemfile::private_key(&mut data.as_slice()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(TlsError::NoPrivateKey { what }),
        Err(e) => Err(TlsError::BadPem {
            what,
            reason: e.to_string(),
        }),
    }
}

/// Turns a rustls error into words, for the server name `expected`.
pub(crate) fn describe_rustls_error(err: &rustls::Error, expected: &str) -> TlsError {
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::NotValidForName => TlsError::NameMismatch {
                expected: expected.to_string(),
                presented: Vec::new(),
            },
            CertificateError::NotValidForNameContext { presented, .. } => TlsError::NameMismatch {
                expected: expected.to_string(),
                presented: presented.iter().map(|p| plain_name(p)).collect(),
            },
            CertificateError::UnknownIssuer => TlsError::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsError::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsError::NotValidYet
            }
            other => TlsError::InvalidCertificate(format!("{other:?}")),
        },
        rustls::Error::AlertReceived(alert) => TlsError::AlertReceived {
            alert: format!("{alert:?}"),
        },
        other => TlsError::Other(other.to_string()),
    }
}

/// `DnsName("example.com")` (how rustls lists presented names) as `example.com`.
fn plain_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_string()
}

/// The rustls error inside an I/O error from tokio-rustls, if there is one.
pub(crate) fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// webpki verification, optionally ignoring a name mismatch.
#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    skip_hostname: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.skip_hostname => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate; still checks the handshake signatures, so the
/// peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
