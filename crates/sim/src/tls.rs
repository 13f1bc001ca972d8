//! Serving over TLS (`sim --tls-cert FILE --tls-key FILE`), as a vLLM started with
//! `--ssl-certfile`/`--ssl-keyfile` does, so the load tester's https path can be tested
//! end to end on loopback. The crypto provider is `ring`, as in the client.

use anyhow::{Context, Result, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A server configuration from PEM files: the certificate chain and its private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read `{}`", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("`{}`: not a PEM file of certificates", cert.display()))?;
    if chain.is_empty() {
        bail!("`{}` holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "`{}`: no private key (PEM: PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("tls: no protocol version in common with the crypto provider")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("tls: the key does not match the certificate")?;
    Ok(Arc::new(config))
}

/// A connection the server answers on: plain TCP or TLS over it. The TCP socket stays
/// reachable for what only it can do (reset on a fault, the direct streaming path).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> &TcpStream;
    /// Plain TCP: the engine thread may write the stream's chunks to the socket itself.
    fn is_plain(&self) -> bool;
}

impl Io for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
    fn is_plain(&self) -> bool {
        true
    }
}

impl Io for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
    fn is_plain(&self) -> bool {
        false
    }
}
