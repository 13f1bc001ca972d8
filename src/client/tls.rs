//! TLS for `https://` servers: which certificates the client trusts, built once per run.
//!
//! The trust store is the operating system's (read with `rustls-native-certs`), plus the
//! certificates of `--ca-cert FILE` (a private CA, a self-signed server). `--insecure` skips
//! the certificate check entirely; the handshake's signatures are still checked, so the
//! bytes are encrypted to whoever holds the key, but nobody vouches for who that is.
//!
//! The crypto provider is `ring` (see `Cargo.toml`); the same one the simulator serves with.

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the user said about TLS (`--ca-cert`, `--insecure`; `server.ca_cert`,
/// `server.insecure` in an experiment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of certificates to trust besides the system's.
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate (a self-signed test server): loudly warned about.
    pub insecure: bool,
}

/// The warning `--insecure` prints once per run.
pub const INSECURE_WARNING: &str = "warning: --insecure: the server's TLS certificate is not checked; anyone on the path could answer in its place. use `--ca-cert FILE` to trust a private CA instead";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for these options (HTTP/1.1 only: no ALPN for h2).
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("tls: no protocol version in common with the crypto provider")?;
    let config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider().signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(opts.ca_cert.as_deref())?)
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The system's trusted roots plus those of `ca_cert`.
fn roots(ca_cert: Option<&Path>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    // Unreadable system certificates are not fatal: a private CA may be all that is needed.
    let native = rustls_native_certs::load_native_certs();
    let (system, _) = store.add_parsable_certificates(native.certs);
    if let Some(path) = ca_cert {
        let shown = path.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| {
                format!("cannot read `{shown}`\nhint: `--ca-cert` takes a PEM file of certificates")
            })?
            .collect::<Result<_, _>>()
            .with_context(|| format!("`{shown}`: not a PEM file of certificates"))?;
        if certs.is_empty() {
            bail!(
                "`{shown}` holds no certificate\nhint: `--ca-cert` takes PEM `-----BEGIN CERTIFICATE-----` blocks"
            );
        }
        for c in certs {
            store.add(c).with_context(|| {
                format!("`{shown}`: a certificate that cannot be a trust anchor")
            })?;
        }
    } else if system == 0 {
        bail!(
            "tls: the system trusts no certificate authority (none readable)\nhint: pass `--ca-cert FILE` with the server's CA, or install the `ca-certificates` package"
        );
    }
    Ok(store)
}

/// The name the certificate must be for: the URL's host (an IP address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .with_context(|| format!("`{host}` is not a host name TLS can check a certificate for"))
}

/// `--insecure`: every certificate is accepted; signatures are still verified so the
/// handshake completes only with the holder of the certificate's key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A handshake failure in words a user can act on.
pub fn explain_handshake_error(e: &std::io::Error, authority: &str) -> String {
    let text = e.to_string();
    let hint = if text.contains("CaUsedAsEndEntity") {
        "\nhint: the server presents a CA certificate as its own (e.g. made with `openssl req -x509` without `-addext basicConstraints=CA:FALSE`): issue it a leaf certificate signed by that CA, or use `--insecure` for a test server"
    } else if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        "\nhint: the server's certificate is not signed by a CA this machine trusts: pass `--ca-cert FILE` (its CA, PEM), or `--insecure` for a test server"
    } else if text.contains("NotValidForName") {
        "\nhint: the certificate is for another host name: use the name it was issued for in the URL"
    } else if text.contains("Expired") {
        "\nhint: the server's certificate has expired (or this machine's clock is wrong)"
    } else if text.contains("corrupt message") || text.contains("InvalidContentType") {
        "\nhint: the server does not speak TLS on this port: try `http://`"
    } else {
        ""
    };
    format!("tls handshake with `{authority}`: {text}{hint}")
}

/// A TLS handshake that failed on its merits (an untrusted certificate, a server that does
/// not speak TLS), as opposed to a connection that could not be made: retrying will not help.
pub fn is_handshake_verdict(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::Other && io.to_string().starts_with("tls handshake")
        })
    })
}

/// The first bytes of a TLS record (handshake or alert, version 3.x): what a plain-http
/// client reads back from a port that speaks TLS.
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}
