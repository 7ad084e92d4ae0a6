//! Certificates generated at test time with rcgen: a test CA, a server
//! certificate for `localhost` and `127.0.0.1` signed by it, a client
//! certificate signed by it, a server certificate for a name nobody uses,
//! and an unrelated CA that trusts nothing here.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Paths of the generated PEM files.
#[derive(Clone, Debug)]
pub struct Certs {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing used here.
    pub other_ca: PathBuf,
    /// Server certificate (localhost, 127.0.0.1).
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// A server certificate signed by the CA, for a name nobody connects to.
    pub wrong_name_cert: PathBuf,
    /// Its key.
    pub wrong_name_key: PathBuf,
    /// Client certificate.
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign CA");
    (cert, key)
}

impl Certs {
    /// Generates everything into `dir`.
    pub fn generate(dir: &Path) -> Certs {
        let (ca_cert, ca_key) = ca("Midge Test CA");
        let (other_ca, _) = ca("Some Other CA");

        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("sign server cert");

        let wrong_key = KeyPair::generate().expect("wrong-name key");
        let mut params =
            CertificateParams::new(vec!["not-this-host.example".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "not-this-host.example");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let wrong_cert = params
            .signed_by(&wrong_key, &ca_cert, &ca_key)
            .expect("sign wrong-name cert");

        let client_key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, "midge-test-client");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = params
            .signed_by(&client_key, &ca_cert, &ca_key)
            .expect("sign client cert");

        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        Certs {
            ca: write("ca.pem", ca_cert.pem()),
            other_ca: write("other-ca.pem", other_ca.pem()),
            server_cert: write("server.pem", server_cert.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            wrong_name_cert: write("wrong-name.pem", wrong_cert.pem()),
            wrong_name_key: write("wrong-name.key", wrong_key.serialize_pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
        }
    }
}
