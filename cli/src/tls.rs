//! `--tls`, `--ca`, `--tls-name`, `--cert`, `--key`: in-transit encryption for every command
//! that connects.

use memcached_autodiscovery::{ClientBuilder, TlsConfig};

use crate::{Failure, Result};

/// In-transit encryption (ElastiCache clusters created with TransitEncryption).
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Connect with TLS, trusting the public CAs (Amazon's among them) unless --ca is given
    /// (ClientBuilder::tls with TlsConfig::webpki_roots in the library).
    #[arg(long)]
    tls: bool,
    /// Trust only the CA certificates in this PEM file (implies --tls; TlsConfig::with_ca_pem
    /// in the library).
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// Check every server's certificate against this name or wildcard (`*.example.com`)
    /// instead of its own name (implies --tls; TlsConfig::server_name in the library).
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
    /// Present the client certificate chain in this PEM file (implies --tls; needs --key;
    /// TlsConfig::client_cert_pem in the library).
    #[arg(
        long = "cert",
        id = "tls_cert",
        value_name = "FILE",
        requires = "tls_key"
    )]
    cert: Option<std::path::PathBuf>,
    /// The private key of --cert, in PEM (needs --cert).
    #[arg(
        long = "key",
        id = "tls_key",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    key: Option<std::path::PathBuf>,
}

fn read(what: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Failure::msg(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })
}

impl TlsArgs {
    /// The TLS settings asked for, or `None` for plaintext.
    pub fn config(&self) -> Result<Option<TlsConfig>> {
        let wanted = self.tls
            || self.ca.is_some()
            || self.tls_name.is_some()
            || self.cert.is_some()
            || self.key.is_some();
        if !wanted {
            return Ok(None);
        }
        let mut config = match &self.ca {
            Some(path) => TlsConfig::with_ca_pem(read("--ca", path)?)?,
            None => TlsConfig::webpki_roots(),
        };
        if let Some(name) = &self.tls_name {
            config = config.server_name(name.clone());
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config = config.client_cert_pem(read("--cert", cert)?, read("--key", key)?)?;
        }
        Ok(Some(config))
    }

    /// `builder` with these settings.
    pub fn apply(&self, builder: ClientBuilder) -> Result<ClientBuilder> {
        Ok(match self.config()? {
            Some(config) => builder.tls(config),
            None => builder,
        })
    }
}
