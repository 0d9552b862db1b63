//! In-transit encryption (cargo feature `tls`): [`TlsConfig`], and the handshake every connection
//! to a node or to the configuration endpoint makes when the client has one.
//!
//! This module owns the rustls client configuration (ring provider, TLS 1.2 and 1.3), the name
//! each connection verifies, the handshake (bounded by the caller's deadline) and the
//! translation of rustls failures into [`Error::Tls`] messages that say what to change. It does
//! not own sockets, streams or their lifecycle (that is the transport, which runs the handshake
//! for node connections and discovery alike); the request path itself has no TLS branch: the
//! stream type is chosen once, at connect time.
//!
//! The file is over 500 lines because rustls's failures are many and each gets a message that
//! says what to change; about 100 lines are unit tests of the name policy.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Peer, TlsErrorKind};

/// The label put in front of a wildcard's domain to check a certificate against the wildcard
/// itself. Certificate authorities may not issue host names with an underscore, so a publicly
/// trusted certificate matches `_wildcard.<domain>` only through `*.<domain>`.
const WILDCARD_PROBE_LABEL: &str = "_wildcard";

/// TLS settings of a [`Client`](crate::Client): which certificate authorities to trust, which
/// name to check each server's certificate against, and an optional client certificate. Given
/// to [`ClientBuilder::tls`](crate::ClientBuilder::tls); every connection, to the nodes and to
/// the configuration endpoint, then uses TLS 1.2 or 1.3 (rustls, ring provider).
///
/// ```no_run
/// # fn demo() -> Result<(), memcached_autodiscovery::Error> {
/// use memcached_autodiscovery::TlsConfig;
/// // ElastiCache: the public web PKI, each node checked against its own hostname.
/// let public = TlsConfig::webpki_roots();
/// // A private CA, every server checked against one wildcard.
/// let private = TlsConfig::with_ca_pem(std::fs::read("ca.pem").unwrap())?
///     .server_name("*.mycluster.xxxxxx.use1.cache.amazonaws.com");
/// # let _ = (public, private); Ok(()) }
/// ```
///
/// # Which name is checked
///
/// * By default, each server is checked against the name the client knows it by, also sent as
///   SNI: a node against the hostname in the cluster configuration (on TLS clusters ElastiCache
///   lists hostnames such as `0001.mycluster.xxxxxx.use1.cache.amazonaws.com`), the
///   configuration endpoint against the host given to
///   [`config_endpoint`](crate::ClientBuilder::config_endpoint). A host that is an IP address is
///   checked against the certificate's IP addresses. When the configuration carries a node's IP
///   too, the client connects to that IP and still checks the hostname, so DNS is not needed to
///   reach the node and the certificate must still name it.
/// * With [`server_name`](TlsConfig::server_name), every server is checked against that one
///   name instead (see there for wildcards).
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub struct TlsConfig {
    roots: RootCertStore,
    server_name: Option<String>,
    client_identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("trusted_roots", &self.roots.len())
            .field("server_name", &self.server_name)
            .field(
                "client_certificate",
                &self.client_identity.as_ref().map(|(chain, _)| chain.len()),
            )
            .finish()
    }
}

impl Default for TlsConfig {
    /// [`TlsConfig::webpki_roots`].
    fn default() -> Self {
        TlsConfig::webpki_roots()
    }
}

impl TlsConfig {
    /// Trusts the certificate authorities of the public web PKI (Mozilla's list, compiled in
    /// from the `webpki-roots` crate), which include the Amazon roots that sign ElastiCache's
    /// certificates. This is the default.
    pub fn webpki_roots() -> TlsConfig {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        TlsConfig {
            roots,
            server_name: None,
            client_identity: None,
        }
    }

    /// Trusts only the CA certificates in `pem` (one or more `-----BEGIN CERTIFICATE-----`
    /// blocks): for servers whose certificates come from a private CA.
    pub fn with_ca_pem(pem: impl AsRef<[u8]>) -> Result<TlsConfig, Error> {
        let config = TlsConfig {
            roots: RootCertStore::empty(),
            server_name: None,
            client_identity: None,
        };
        config.add_ca_pem(pem)
    }

    /// Also trusts the CA certificates in `pem`, besides those already trusted.
    pub fn add_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Result<TlsConfig, Error> {
        let certs = certificates(pem.as_ref(), "the CA PEM")?;
        for cert in certs {
            self.roots.add(cert).map_err(|e| {
                Error::settings(
                    "TlsConfig::add_ca_pem",
                    format!("a certificate of the CA PEM cannot be a trust anchor: {e}"),
                )
            })?;
        }
        Ok(self)
    }

    /// Checks every server's certificate against `name` (also sent as SNI) instead of each
    /// server's own name. `name` is a DNS name, an IP address, or a wildcard `*.D`.
    ///
    /// A wildcard `*.D` (ElastiCache documents `*.mycluster.xxxxxx.use1.cache.amazonaws.com`)
    /// is not itself a name a certificate can be checked against, so each connection checks one
    /// concrete name inside `D`:
    ///
    /// * a server whose own name is one label directly under `D` (a node
    ///   `0001.mycluster.xxxxxx.use1.cache.amazonaws.com`) is checked against its own name: a
    ///   certificate carrying `*.D`, or that exact name, is accepted;
    /// * any other server (a configuration endpoint outside `D`, a node known by IP or by a
    ///   name elsewhere) is checked against `_wildcard.D`. Public CAs may not issue names with
    ///   an underscore, so in practice only a certificate carrying `*.D` itself is accepted.
    ///
    /// Either way a certificate for `*.D` is never accepted for names deeper than one label
    /// below `D`, nor for `D` itself. The name is checked when the client is built.
    pub fn server_name(mut self, name: impl Into<String>) -> TlsConfig {
        self.server_name = Some(name.into());
        self
    }

    /// Presents a client certificate to servers that ask for one: `chain_pem` holds the
    /// certificate first, then any intermediates; `key_pem` the private key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn client_cert_pem(
        mut self,
        chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<TlsConfig, Error> {
        let chain = certificates(chain_pem.as_ref(), "the client certificate PEM")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_ref()).map_err(|e| {
            Error::settings(
                "TlsConfig::client_cert_pem",
                format!("no usable private key in the key PEM ({e})"),
            )
        })?;
        self.client_identity = Some((chain, Arc::new(key)));
        Ok(self)
    }

    /// The rustls configuration and name rule, built once per client.
    pub(crate) fn context(&self) -> Result<Arc<TlsContext>, Error> {
        let invalid = |what: String| Error::settings("tls", what);
        if self.roots.is_empty() {
            return Err(invalid(
                "no trusted certificate authority (the CA PEM was empty)".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| invalid(format!("TLS versions: {e}")))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots.clone()), provider)
                .build()
                .map_err(|e| invalid(format!("certificate verifier: {e}")))?;
        let builder = builder.with_webpki_verifier(verifier);
        let config = match &self.client_identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| invalid(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        let names = match self.server_name.as_deref().map(str::trim) {
            None => NameRule::PerHost,
            Some(name) => NameRule::parse(name).map_err(invalid)?,
        };
        Ok(Arc::new(TlsContext {
            connector: TlsConnector::from(Arc::new(config)),
            names,
            client_certificate: self.client_identity.is_some(),
        }))
    }
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::settings("tls", format!("{what} cannot be read: {e}")))?;
    if certs.is_empty() {
        return Err(Error::settings(
            "tls",
            format!("{what} holds no `-----BEGIN CERTIFICATE-----` block"),
        ));
    }
    Ok(certs)
}

/// Which name a connection checks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NameRule {
    /// Each server's own name.
    PerHost,
    /// One name for every server.
    Fixed(ServerName<'static>),
    /// `*.domain`: a host one label under `domain` is checked against its own name, any other
    /// against `probe` (`_wildcard.domain`).
    Wildcard {
        domain: String,
        probe: ServerName<'static>,
    },
}

impl NameRule {
    fn parse(name: &str) -> Result<NameRule, String> {
        let bad = |why: &str| {
            format!(
                "server_name {name:?} {why} (expected a DNS name, an IP address, or a wildcard \
                 such as *.mycluster.xxxxxx.use1.cache.amazonaws.com)"
            )
        };
        if let Some(domain) = name.strip_prefix("*.") {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if domain.contains('*') || !domain.contains('.') {
                return Err(bad(
                    "is not a usable wildcard: only one leading `*.` label, over a domain of at least two labels",
                ));
            }
            let probe = ServerName::try_from(format!("{WILDCARD_PROBE_LABEL}.{domain}"))
                .map_err(|_| bad("does not hold a valid domain after `*.`"))?;
            return Ok(NameRule::Wildcard { domain, probe });
        }
        if name.contains('*') {
            return Err(bad("has a `*` elsewhere than as the whole first label"));
        }
        ServerName::try_from(name.to_string())
            .map(NameRule::Fixed)
            .map_err(|_| bad("is not a valid name"))
    }

    /// The name a connection to `host` checks (and sends as SNI).
    fn name_for(&self, host: &str) -> Result<ServerName<'static>, String> {
        let own = || {
            ServerName::try_from(host.to_string()).map_err(|_| {
                format!(
                    "{host:?} is not a name a certificate can be checked against: set \
                     TlsConfig::server_name to the name the certificate carries"
                )
            })
        };
        match self {
            NameRule::PerHost => own(),
            NameRule::Fixed(name) => Ok(name.clone()),
            NameRule::Wildcard { domain, probe } => {
                let lower = host.trim_end_matches('.').to_ascii_lowercase();
                let directly_under = lower
                    .strip_suffix(domain.as_str())
                    .and_then(|head| head.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'));
                match directly_under {
                    true => own(),
                    false => Ok(probe.clone()),
                }
            }
        }
    }
}

/// What a client needs to open TLS connections: built once, shared by every connection.
pub(crate) struct TlsContext {
    connector: TlsConnector,
    names: NameRule,
    client_certificate: bool,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("names", &self.names)
            .field("client_certificate", &self.client_certificate)
            .finish_non_exhaustive()
    }
}

fn tls_error(peer: Peer<'_>, kind: TlsErrorKind, message: String) -> Error {
    Error::Tls {
        node: peer.id(),
        kind,
        message: Arc::from(message),
    }
}

impl TlsContext {
    /// Runs the TLS handshake over `tcp` with the server known as `host`, until `deadline`.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
        peer: Peer<'_>,
        deadline: Instant,
    ) -> Result<TlsStream<TcpStream>, Error> {
        let name = self
            .names
            .name_for(host)
            .map_err(|m| tls_error(peer, TlsErrorKind::NameMismatch, m))?;
        let shown = display_name(&name);
        match tokio::time::timeout_at(deadline, self.connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(self.failure(e, peer, &shown)),
            Err(_) => Err(tls_error(
                peer,
                TlsErrorKind::HandshakeTimeout,
                format!(
                    "no answer to the TLS handshake in time: either the {} is unresponsive, or \
                     this {} does not use TLS (a plaintext memcached waits silently for a \
                     command line); if it does not, build the client without ClientBuilder::tls",
                    peer.what(),
                    peer.what()
                ),
            )),
        }
    }

    /// Whether connections present a client certificate.
    pub(crate) fn presents_client_certificate(&self) -> bool {
        self.client_certificate
    }

    /// The [`Error`] for an I/O error of the TLS handshake.
    fn failure(&self, e: std::io::Error, peer: Peer<'_>, name: &str) -> Error {
        if let Some(err) = rustls_failure(&e, peer, self.client_certificate, name) {
            return err;
        }
        let what = peer.what();
        if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        ) {
            return tls_error(
                peer,
                TlsErrorKind::Other,
                format!(
                    "the {what} closed the connection during the TLS handshake ({e}); a server \
                     that rejects every TLS version or cipher the client offers does so"
                ),
            );
        }
        Error::Io {
            node: peer.id(),
            source: Arc::new(e),
            hint: Some("during the TLS handshake"),
        }
    }
}

fn display_name(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// The [`Error::Tls`] for an I/O error that carries a rustls error, or `None` when it does not.
/// `name` is the name the certificate was checked against (empty when unknown).
pub(crate) fn rustls_failure(
    e: &std::io::Error,
    peer: Peer<'_>,
    client_certificate: bool,
    name: &str,
) -> Option<Error> {
    let err = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let what = peer.what();
    let (kind, message) = match err {
        rustls::Error::InvalidCertificate(cert) => certificate_failure(cert, what, name),
        rustls::Error::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            let message = match alert {
                A::CertificateRequired => format!(
                    "the {what} requires a client certificate: give one with \
                     TlsConfig::client_cert_pem"
                ),
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                    if client_certificate =>
                {
                    format!(
                        "the {what} refused the client certificate (alert {alert:?}): check the \
                         certificate given to TlsConfig::client_cert_pem and the CA the server trusts"
                    )
                }
                A::HandshakeFailure | A::BadCertificate | A::AccessDenied
                    if !client_certificate =>
                {
                    format!(
                        "the {what} refused the TLS handshake (alert {alert:?}); if it requires a \
                         client certificate, give one with TlsConfig::client_cert_pem"
                    )
                }
                A::ProtocolVersion | A::InsufficientSecurity => format!(
                    "the {what} accepts no TLS version or cipher the client offers (alert \
                     {alert:?}); the client speaks TLS 1.2 and 1.3"
                ),
                other => format!("the {what} ended the TLS session (alert {other:?})"),
            };
            (TlsErrorKind::RejectedByServer, message)
        }
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::PeerSentOversizedRecord => (
            TlsErrorKind::ServerNotTls,
            format!(
                "the {what} answered the TLS handshake with bytes that are not TLS ({err}): \
                 this {what} does not use TLS; build the client without ClientBuilder::tls"
            ),
        ),
        other => (TlsErrorKind::Other, format!("TLS failed: {other}")),
    };
    Some(tls_error(peer, kind, message))
}

fn certificate_failure(cert: &CertificateError, what: &str, name: &str) -> (TlsErrorKind, String) {
    match cert {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => (
            TlsErrorKind::UntrustedCertificate,
            format!(
                "the certificate of the {what} is not trusted ({cert}): it does not chain to a \
                 trusted certificate authority. If the servers use a private CA, trust it with \
                 TlsConfig::with_ca_pem (or add_ca_pem); TlsConfig::webpki_roots trusts only the \
                 public web PKI"
            ),
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let presented = match cert {
                CertificateError::NotValidForNameContext { presented, .. } => {
                    let names: Vec<&str> = presented.iter().map(|n| bare_name(n)).collect();
                    format!(" (it names {})", names.join(", "))
                }
                _ => String::new(),
            };
            (
                TlsErrorKind::NameMismatch,
                format!(
                    "the certificate of the {what} is not valid for {name:?}{presented}: set \
                     TlsConfig::server_name to a name the certificate carries (on ElastiCache, \
                     the wildcard *.<cluster>.<id>.<region>.cache.amazonaws.com)"
                ),
            )
        }
        other => (
            TlsErrorKind::InvalidCertificate,
            format!("the certificate of the {what} is not acceptable: {other}"),
        ),
    }
}

/// A name as rustls lists a certificate's names (`DnsName("a.example")`, `IpAddress(10.0.0.1)`),
/// without the wrapping.
fn bare_name(listed: &str) -> &str {
    let inner = listed
        .strip_prefix("DnsName(")
        .or_else(|| listed.strip_prefix("IpAddress("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(listed);
    inner.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &str) -> ServerName<'static> {
        ServerName::try_from(name.to_string()).unwrap()
    }

    #[test]
    fn per_host_names() {
        let rule = NameRule::PerHost;
        assert_eq!(
            rule.name_for("0001.c.x.use1.cache.amazonaws.com").unwrap(),
            dns("0001.c.x.use1.cache.amazonaws.com")
        );
        assert!(matches!(
            rule.name_for("10.0.0.7").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(rule.name_for("bad name").is_err());
    }

    #[test]
    fn a_fixed_name_applies_to_every_host() {
        let rule = NameRule::parse("cache.example.test").unwrap();
        assert_eq!(
            rule.name_for("10.0.0.7").unwrap(),
            dns("cache.example.test")
        );
        assert_eq!(
            rule.name_for("node-1.elsewhere.test").unwrap(),
            dns("cache.example.test")
        );
    }

    #[test]
    fn wildcard_names() {
        let rule = NameRule::parse("*.MyCluster.x.use1.cache.amazonaws.com").unwrap();
        // One label under the domain: the host's own name (any case).
        assert_eq!(
            rule.name_for("0001.mycluster.x.use1.cache.amazonaws.com")
                .unwrap(),
            dns("0001.mycluster.x.use1.cache.amazonaws.com")
        );
        assert_eq!(
            rule.name_for("0002.MYCLUSTER.x.use1.cache.amazonaws.com.")
                .unwrap(),
            dns("0002.MYCLUSTER.x.use1.cache.amazonaws.com.")
        );
        let probe = dns("_wildcard.mycluster.x.use1.cache.amazonaws.com");
        for other in [
            "mycluster.x.cfg.use1.cache.amazonaws.com", // the configuration endpoint
            "a.0001.mycluster.x.use1.cache.amazonaws.com", // two labels deep
            "mycluster.x.use1.cache.amazonaws.com",     // the domain itself
            "evilmycluster.x.use1.cache.amazonaws.com", // a suffix, not a subdomain
            "10.0.0.7",
        ] {
            assert_eq!(rule.name_for(other).unwrap(), probe, "{other}");
        }
    }

    #[test]
    fn unusable_names_are_refused() {
        for bad in [
            "*.com",
            "*.*.example.test",
            "a.*.example.test",
            "x*.example.test",
            "",
            "a b",
        ] {
            assert!(NameRule::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            NameRule::parse("10.1.2.3").unwrap(),
            NameRule::Fixed(ServerName::IpAddress(_))
        ));
    }

    #[test]
    fn listed_names_are_shown_bare() {
        assert_eq!(bare_name("DnsName(\"*.c.test\")"), "*.c.test");
        assert_eq!(bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(bare_name("plain.test"), "plain.test");
    }

    #[test]
    fn pem_problems_are_configuration_errors() {
        let err = TlsConfig::with_ca_pem("not a pem").unwrap_err();
        assert!(matches!(err, Error::Settings { .. }), "{err}");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
        let err = TlsConfig::webpki_roots()
            .client_cert_pem("", "")
            .unwrap_err();
        assert!(matches!(err, Error::Settings { .. }), "{err}");
        assert!(TlsConfig::webpki_roots().context().is_ok());
        let err = TlsConfig::webpki_roots()
            .server_name("*.com")
            .context()
            .unwrap_err();
        assert!(err.to_string().contains("server_name"), "{err}");
    }
}
