//! TLS for the listener, on rustls with the ring provider: a certificate chain and its key from
//! PEM files and, when a client CA is configured, client certificates signed by it (mTLS).
//! The files are read again on SIGHUP, with the keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};

/// The `[tls]` section: without `cert_file` and `key_file` the service speaks plain HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: when set, every client must present a certificate signed by one.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether the service serves HTTPS. Fails when the section is half filled in.
    pub fn enabled(&self) -> Result<bool, TlsError> {
        match (&self.cert_file, &self.key_file, &self.client_ca_file) {
            (Some(_), Some(_), _) => Ok(true),
            (None, None, None) => Ok(false),
            _ => Err(TlsError::Incomplete),
        }
    }

    /// Reads the files into a rustls server configuration offering HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (Some(cert_file), Some(key_file)) = (&self.cert_file, &self.key_file) else {
            return Err(TlsError::Incomplete);
        };
        let chain = read_certificates(cert_file)?;
        let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| TlsError::File {
            path: key_file.clone(),
            problem: pem_problem(&error, "private key"),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca_file) => {
                let mut roots = RootCertStore::empty();
                for certificate in read_certificates(ca_file)? {
                    roots.add(certificate).map_err(rustls_error)?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(rustls_error)?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|error| TlsError::File {
                path: key_file.clone(),
                problem: format!("does not fit the certificate: {error}"),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |problem: String| TlsError::File {
        path: path.to_owned(),
        problem,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|error| file_error(pem_problem(&error, "certificate")))?;
    if certificates.is_empty() {
        return Err(file_error("no PEM certificate in the file".to_owned()));
    }
    Ok(certificates)
}

/// Describes a PEM error without the file's bytes (some variants carry them).
fn pem_problem(error: &rustls::pki_types::pem::Error, kind: &str) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => format!("no PEM {kind} in the file"),
        _ => format!("not a valid PEM {kind}"),
    }
}

fn rustls_error(error: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(error.to_string())
}

/// Why the TLS settings cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// TLS settings that do not go together.
    #[error(
        "configuration: tls: cert_file and key_file go together, and client_ca_file needs them"
    )]
    Incomplete,
    /// A TLS file is unusable.
    #[error("tls: {path}: {problem}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the certificates or keys.
    #[error("tls: {0}")]
    Rustls(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_section_is_refused_and_none_is_plain_http() {
        assert!(!TlsConfig::default().enabled().expect("plain"));
        let only_cert = TlsConfig {
            cert_file: Some("cert.pem".into()),
            ..TlsConfig::default()
        };
        assert!(matches!(only_cert.enabled(), Err(TlsError::Incomplete)));
        let only_ca = TlsConfig {
            client_ca_file: Some("ca.pem".into()),
            ..TlsConfig::default()
        };
        assert!(matches!(only_ca.enabled(), Err(TlsError::Incomplete)));
    }

    #[test]
    fn files_are_named_and_never_quoted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = rcgen::generate_simple_self_signed(["localhost".to_owned()]).expect("cert");
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, cert.cert.pem()).expect("write");
        let secret =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw\n-----END PRIVATE KEY-----\n";
        std::fs::write(&key_file, secret).expect("write");
        let config = TlsConfig {
            cert_file: Some(cert_file.clone()),
            key_file: Some(key_file.clone()),
            client_ca_file: None,
        };
        let message = config.server_config().expect_err("bad key").to_string();
        assert!(message.contains("key.pem"), "{message}");
        assert!(!message.contains("c2VjcmV0"), "{message}");

        std::fs::write(&key_file, cert.signing_key.serialize_pem()).expect("write");
        config.server_config().expect("a valid pair loads");
        std::fs::write(&cert_file, "not pem").expect("write");
        let message = config.server_config().expect_err("no cert").to_string();
        assert!(message.contains("no PEM certificate"), "{message}");
    }
}
