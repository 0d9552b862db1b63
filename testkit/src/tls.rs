//! TLS for the test kit (feature `tls`): the identity the local servers present, its files for
//! memcached, the rustls server of the emulated endpoint, and the client the kit's readiness
//! probes use.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::memcached::MemcachedTls;

/// What the local servers present: a certificate chain and key (PEM), and optionally the
/// requirement of a client certificate.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ServerIdentity {
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_auth: Option<ClientAuth>,
}

/// Clients must present a certificate issued by `ca_pem`; the kit's own probes present
/// `probe_chain_pem` and `probe_key_pem`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ClientAuth {
    pub ca_pem: Vec<u8>,
    pub probe_chain_pem: Vec<u8>,
    pub probe_key_pem: Vec<u8>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("chain_pem_bytes", &self.chain_pem.len())
            .field("client_auth", &self.client_auth.is_some())
            .finish_non_exhaustive()
    }
}

fn invalid(what: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("{what}: no certificate in the PEM")));
    }
    Ok(certs)
}

fn private_key(pem: &[u8], what: &str) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| invalid(format!("{what}: {e}")))
}

/// The rustls server configuration of the emulated endpoint.
pub(crate) fn server_config(
    chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let chain = certificates(chain_pem, "the server certificate chain")?;
    let key = private_key(key_pem, "the server key")?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid)?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_pem, "the client CA")? {
                roots.add(cert).map_err(invalid)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(invalid)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(invalid)?;
    Ok(Arc::new(config))
}

/// The connector of the kit's readiness probes. The probe asks a process it just started for
/// its pid; it checks liveness, not identity, so it accepts any server certificate (signatures
/// are still checked).
pub(crate) fn probe_connector(tls: &MemcachedTls) -> io::Result<tokio_rustls::TlsConnector> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider())));
    let config = match &tls.probe_identity {
        None => builder.with_no_client_auth(),
        Some((chain_pem, key_pem)) => builder
            .with_client_auth_cert(
                certificates(chain_pem, "the probe certificate chain")?,
                private_key(key_pem, "the probe key")?,
            )
            .map_err(invalid)?,
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[derive(Debug)]
struct AnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A private directory holding the identity's files for memcached, removed when dropped.
/// memcached runs as `nobody`, so the directory and files are world-readable: test material
/// only.
#[derive(Debug)]
pub(crate) struct TlsFiles {
    dir: PathBuf,
    tls: MemcachedTls,
}

impl TlsFiles {
    /// Checks `identity` and writes its files.
    pub(crate) fn write(identity: &ServerIdentity) -> io::Result<TlsFiles> {
        // Refuse a broken identity here, with a clear message, rather than in memcached's log.
        server_config(
            &identity.chain_pem,
            &identity.key_pem,
            identity.client_auth.as_ref().map(|c| c.ca_pem.as_slice()),
        )?;
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "memcached-autodiscovery-tls-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let files = TlsFiles {
            tls: MemcachedTls {
                chain_file: dir.join("chain.pem"),
                key_file: dir.join("key.pem"),
                client_ca_file: identity
                    .client_auth
                    .as_ref()
                    .map(|_| dir.join("client-ca.pem")),
                probe_identity: identity
                    .client_auth
                    .as_ref()
                    .map(|c| (c.probe_chain_pem.clone(), c.probe_key_pem.clone())),
            },
            dir,
        };
        readable(&files.dir, 0o755)?;
        write_readable(&files.tls.chain_file, &identity.chain_pem)?;
        write_readable(&files.tls.key_file, &identity.key_pem)?;
        if let (Some(path), Some(auth)) = (&files.tls.client_ca_file, &identity.client_auth) {
            write_readable(path, &auth.ca_pem)?;
        }
        Ok(files)
    }

    /// The TLS options of the memcached processes.
    pub(crate) fn memcached(&self) -> MemcachedTls {
        self.tls.clone()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_readable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    std::fs::write(path, bytes)?;
    readable(path, 0o644)
}

fn readable(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
