//! HTTPS with the committed test certificate (`tls/`): a CA and a leaf for 127.0.0.1.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The CA that signed the server certificate (goes into the kubeconfig).
pub const CA_PEM: &str = include_str!("../tls/ca.crt");
const CERT_PEM: &str = include_str!("../tls/server.crt");
const KEY_PEM: &str = include_str!("../tls/server.key");

/// A TLS acceptor offering HTTP/1.1.
pub fn acceptor() -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs = vec![CertificateDer::from_pem_slice(CERT_PEM.as_bytes())?];
    let key = PrivateKeyDer::from_pem_slice(KEY_PEM.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
