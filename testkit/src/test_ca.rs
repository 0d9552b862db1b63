//! A certificate authority made for a test (feature `tls`): it signs the certificates the local
//! servers present (and client certificates), so that a test can trust exactly it.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A self-signed certificate authority, made fresh for one test.
///
/// ```
/// # #[cfg(feature = "tls")] {
/// use memcached_autodiscovery_testkit::TestCa;
///
/// let ca = TestCa::new("test CA");
/// let (chain_pem, key_pem) = ca.issue(&["node-1.local-cluster.test", "127.0.0.1"]);
/// assert!(ca.pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(chain_pem.contains("BEGIN CERTIFICATE") && key_pem.contains("PRIVATE KEY"));
/// # }
/// ```
pub struct TestCa {
    /// The authority's own certificate (PEM): what a client trusts.
    pub pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A new authority whose common name is `name`.
    ///
    /// # Panics
    /// If the key or the certificate cannot be made (a test setup failure).
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a self-signed CA");
        TestCa {
            pem: cert.pem(),
            cert,
            key,
        }
    }

    /// A leaf certificate for `names` (DNS names, wildcards or IP addresses), signed by this
    /// authority, its common name the first name: (certificate chain PEM, private key PEM).
    ///
    /// # Panics
    /// If a name is not a valid subject alternative name, or signing fails.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("valid certificate names");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a certificate signed by the test CA");
        (cert.pem(), key.serialize_pem())
    }
}
