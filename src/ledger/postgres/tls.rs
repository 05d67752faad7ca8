//! TLS to the PostgreSQL ledger: the rustls connector the pool opens connections with, trusting
//! the `sslrootcert` file of the ledger URL or else the system's store, checking the server's
//! certificate chain and host name whenever TLS is used, and presenting the `sslcert` client
//! certificate (with its `sslkey`) when the URL names one. What `sslmode` means is the config's
//! ([`crate::config::TlsMode`]); this module only builds the connector.

use crate::config::{LedgerTls, TlsMode};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The driver's `sslmode` for `tls`.
pub fn ssl_mode(tls: &LedgerTls) -> tokio_postgres::config::SslMode {
    use tokio_postgres::config::SslMode;
    match tls.mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require => SslMode::Require,
    }
}

/// The connector for `tls`; an unreadable or empty `sslrootcert` file is an error naming it.
pub fn connector(tls: &LedgerTls) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.root_file {
        Some(file) => {
            let shown = crate::shown::shown(file);
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert {shown}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("sslrootcert {shown}: no certificate in it"));
            }
        }
        None => {
            // Certificates the system store holds but rustls cannot parse are skipped.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match &tls.client {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let (cert_shown, key_shown) = (
                crate::shown::shown(cert_file),
                crate::shown::shown(key_file),
            );
            let chain = CertificateDer::pem_file_iter(cert_file)
                .map_err(|e| format!("sslcert {cert_shown}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslcert {cert_shown}: {e}"))?;
            if chain.is_empty() {
                return Err(format!("sslcert {cert_shown}: no certificate in it"));
            }
            // The key's own bytes never appear in an error: only its file's name.
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| format!("sslkey {key_shown}: not a PEM private key ({e})"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert {cert_shown} with sslkey {key_shown}: {e}"))?
        }
    };
    Ok(MakeRustlsConnect::new(config))
}
