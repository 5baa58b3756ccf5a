//! Envelope keys: a keyring file sealed under a key-encryption key that never leaves an
//! OpenBao or Vault server, opened with its transit engine's `decrypt` at start and on reload.
//!
//! A sealed keyring file holds only the transit ciphertext of the plain keyring's TOML:
//!
//! ```toml
//! kms_key = "pseudonym"
//! ciphertext = "vault:v1:..."
//! ```
//!
//! `pseudonymd keygen --config <file with [kms]>` writes such files; the plain key bytes exist
//! only in the memory of `pseudonymd` and of the KMS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keyring::{Keyring, write_private_file};

/// Environment variables read, in this order, for the KMS token when `token_file` is not set.
pub const TOKEN_ENV: [&str; 3] = ["PSEUDONYM_KMS_TOKEN", "BAO_TOKEN", "VAULT_TOKEN"];

/// The `[kms]` section: the OpenBao/Vault transit key that seals the keyring file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// Base address of the server, e.g. `https://bao.internal:8200`.
    pub address: String,
    /// Name of the transit key.
    pub key: String,
    /// Where the transit engine is mounted.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// File holding the token (read at every load, so it may be renewed). Without it, the
    /// first of [`TOKEN_ENV`] that is set.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificates to trust for the server's certificate, besides the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time for one call to the server.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_mount() -> String {
    "transit".to_owned()
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Refuses plain HTTP except to this machine.
fn check_address(address: &str) -> Result<(), KmsError> {
    let insecure = || KmsError::InsecureAddress(address.to_owned());
    let url = reqwest::Url::parse(address).map_err(|_| KmsError::Unreachable {
        address: address.to_owned(),
        problem: "not a URL".to_owned(),
    })?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host_str() {
                Some("localhost") => true,
                Some(host) => host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback()),
                None => false,
            };
            if loopback { Ok(()) } else { Err(insecure()) }
        }
        _ => Err(insecure()),
    }
}

/// An OpenBao/Vault transit key, reached over HTTP(S).
#[derive(Debug)]
pub struct Transit {
    config: KmsConfig,
    http: reqwest::blocking::Client,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedFile {
    kms_key: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Answer<T> {
    data: T,
}

#[derive(Deserialize)]
struct Encrypted {
    ciphertext: String,
}

#[derive(Deserialize)]
struct Decrypted {
    plaintext: SecretString,
}

#[derive(Deserialize, Default)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

impl Transit {
    /// A client of the configured transit key. Blocking: call it outside async tasks.
    pub fn new(config: &KmsConfig) -> Result<Self, KmsError> {
        check_address(&config.address)?;
        let mut http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            // A redirect would re-send the token (and, for encrypt, the keyring) elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca_file) = &config.ca_file {
            let file_error = |problem: String| KmsError::File {
                path: ca_file.clone(),
                problem,
            };
            let pem = std::fs::read(ca_file).map_err(|error| file_error(error.to_string()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .ok_or_else(|| file_error("no PEM certificate in the file".to_owned()))?;
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build().map_err(|error| KmsError::Unreachable {
            address: config.address.clone(),
            problem: error.to_string(),
        })?;
        Ok(Transit {
            config: config.clone(),
            http,
        })
    }

    /// Encrypts `plaintext` under the transit key; the answer is a `vault:vN:...` ciphertext.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, KmsError> {
        let encoded = Zeroizing::new(STANDARD.encode(plaintext));
        // Sized exactly, so that no copy of the plaintext is left behind by a reallocation.
        let (head, tail) = (r#"{"plaintext":""#, r#""}"#);
        let mut body = Zeroizing::new(String::with_capacity(
            head.len() + encoded.len() + tail.len(),
        ));
        body.push_str(head);
        body.push_str(&encoded);
        body.push_str(tail);
        let answer: Encrypted = self.call("encrypt", body)?;
        Ok(answer.ciphertext)
    }

    /// Decrypts a ciphertext of [`Transit::encrypt`].
    pub fn decrypt(&self, ciphertext: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let body = Zeroizing::new(serde_json::json!({ "ciphertext": ciphertext }).to_string());
        let answer: Decrypted = self.call("decrypt", body)?;
        STANDARD
            .decode(answer.plaintext.expose_secret())
            .map(Zeroizing::new)
            .map_err(|_| KmsError::BadAnswer("decrypt"))
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        body: Zeroizing<String>,
    ) -> Result<T, KmsError> {
        let config = &self.config;
        let url = format!(
            "{}/v1/{}/{operation}/{}",
            config.address.trim_end_matches('/'),
            config.mount.trim_matches('/'),
            config.key
        );
        let mut token = reqwest::header::HeaderValue::from_str(self.token()?.expose_secret())
            .map_err(|_| KmsError::NoToken)?;
        token.set_sensitive(true);
        let response = self
            .http
            .post(url)
            .header("x-vault-token", token)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .send()
            .map_err(|error| KmsError::Unreachable {
                address: config.address.clone(),
                problem: error.without_url().to_string(),
            })?;
        let status = response.status();
        let bytes = read_answer(response).map_err(|_| KmsError::BadAnswer(operation))?;
        if !status.is_success() {
            let errors: Errors = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(KmsError::Refused {
                operation,
                key: config.key.clone(),
                status: status.as_u16(),
                message: errors.errors.join("; "),
            });
        }
        serde_json::from_slice::<Answer<T>>(&bytes)
            .map(|answer| answer.data)
            .map_err(|_| KmsError::BadAnswer(operation))
    }

    fn token(&self) -> Result<SecretString, KmsError> {
        let token = match &self.config.token_file {
            // Checked as a keyring is: the token opens the keyring.
            Some(path) => crate::private_file::read(path, crate::private_file::Access::OwnerOnly)
                .map(|text| SecretString::from(text.as_str()))
                .map_err(|error| KmsError::File {
                    path: path.clone(),
                    problem: error.to_string(),
                })?,
            None => TOKEN_ENV
                .iter()
                .find_map(|name| std::env::var(name).ok())
                .map(SecretString::from)
                .ok_or(KmsError::NoToken)?,
        };
        let trimmed = token.expose_secret().trim();
        if trimmed.is_empty() {
            return Err(KmsError::NoToken);
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }

    /// Opens a sealed keyring file.
    pub fn load_keyring(&self, path: &Path) -> Result<Keyring, KmsError> {
        let sealed_error = |problem: String| KmsError::Sealed {
            path: path.to_owned(),
            problem,
        };
        let text = crate::private_file::read(path, crate::private_file::Access::OwnerOnly)
            .map_err(|error| sealed_error(error.to_string()))?;
        let sealed: SealedFile = toml::from_str(&text).map_err(|_| {
            sealed_error(
                "not a sealed keyring (kms_key and ciphertext); a plain keyring needs no [kms]"
                    .to_owned(),
            )
        })?;
        if sealed.kms_key != self.config.key {
            return Err(sealed_error(format!(
                "sealed with transit key {:?}, but kms.key is {:?}",
                sealed.kms_key, self.config.key
            )));
        }
        let plain = self.decrypt(&sealed.ciphertext)?;
        let plain = std::str::from_utf8(&plain)
            .map_err(|_| sealed_error("the opened keyring is not UTF-8".to_owned()))?;
        Ok(Keyring::from_toml(plain, &path.display().to_string())?)
    }

    /// Seals `keyring` and writes it to `path`, replacing the file atomically.
    pub fn save_keyring(&self, keyring: &Keyring, path: &Path) -> Result<(), KmsError> {
        let sealed = SealedFile {
            kms_key: self.config.key.clone(),
            ciphertext: self.encrypt(keyring.to_toml().as_bytes())?,
        };
        let text = format!(
            "# pseudonym keyring, sealed by the OpenBao/Vault transit key {:?}.\n\
             # pseudonymd opens it with its [kms] settings; it holds no plain key bytes.\n{}",
            self.config.key,
            toml::to_string(&sealed).map_err(|_| KmsError::BadAnswer("encrypt"))?
        );
        write_private_file(path, text.as_bytes()).map_err(|error| KmsError::Sealed {
            path: path.to_owned(),
            problem: error.to_string(),
        })
    }
}

/// A keyring file as configured: plain, or sealed by a KMS.
#[derive(Debug)]
pub enum KeyringStore {
    /// A plain TOML keyring, mode 0600.
    Plain(PathBuf),
    /// A keyring sealed by a transit key.
    Sealed(PathBuf, Transit),
}

impl KeyringStore {
    /// The store of `path`, sealed when `kms` is configured.
    pub fn new(path: &Path, kms: Option<&KmsConfig>) -> Result<Self, KmsError> {
        Ok(match kms {
            None => KeyringStore::Plain(path.to_owned()),
            Some(kms) => KeyringStore::Sealed(path.to_owned(), Transit::new(kms)?),
        })
    }

    /// The transit key that seals the file, if one does.
    pub fn transit(&self) -> Option<&Transit> {
        match self {
            KeyringStore::Plain(_) => None,
            KeyringStore::Sealed(_, transit) => Some(transit),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            KeyringStore::Plain(path) | KeyringStore::Sealed(path, _) => path,
        }
    }

    /// Reads (and opens) the keyring.
    pub fn load(&self) -> Result<Keyring, KmsError> {
        match self {
            KeyringStore::Plain(path) => Keyring::load(path).map_err(|error| {
                if is_sealed(path) {
                    KmsError::Sealed {
                        path: path.clone(),
                        problem: "this keyring is sealed by a KMS: configure [kms] to open it"
                            .to_owned(),
                    }
                } else {
                    error.into()
                }
            }),
            KeyringStore::Sealed(path, transit) => transit.load_keyring(path),
        }
    }

    /// Writes (and seals) the keyring.
    pub fn save(&self, keyring: &Keyring) -> Result<(), KmsError> {
        match self {
            KeyringStore::Plain(path) => Ok(keyring.save(path)?),
            KeyringStore::Sealed(path, transit) => transit.save_keyring(keyring, path),
        }
    }
}

fn is_sealed(path: &Path) -> bool {
    crate::private_file::read(path, crate::private_file::Access::OwnerOnly)
        .ok()
        .and_then(|text| toml::from_str::<SealedFile>(&text).ok())
        .is_some()
}

/// The most an answer of the KMS may hold: a decrypted keyring of hundreds of versions.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The body of a KMS answer (a decrypted keyring, in base64), read into one buffer sized once
/// and wiped when dropped: growing a buffer as it fills would leave unwiped copies behind.
fn read_answer(response: reqwest::blocking::Response) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_ANSWER_BYTES + 1));
    response
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(std::io::Error::other("the answer is too long"));
    }
    Ok(bytes)
}

/// Why the KMS could not seal or open a keyring file. Messages never hold key material or a
/// response body.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// No token to authenticate to the KMS.
    #[error("kms: no token: set kms.token_file or one of {:?}", TOKEN_ENV)]
    NoToken,
    /// A file the KMS settings name is unusable.
    #[error("kms: {path}: {problem}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The KMS did not answer.
    #[error("kms: {address} did not answer: {problem}")]
    Unreachable {
        /// The KMS address.
        address: String,
        /// What went wrong, without any response body.
        problem: String,
    },
    /// The KMS address would send the token in the clear over a network.
    #[error(
        "kms: address {0} is plain http to another machine; use https (plain http is allowed on loopback only)"
    )]
    InsecureAddress(String),
    /// The KMS refused an operation.
    #[error("kms: transit {operation} with key {key:?} refused ({status}): {message}")]
    Refused {
        /// `encrypt` or `decrypt`.
        operation: &'static str,
        /// The transit key's name.
        key: String,
        /// The HTTP status.
        status: u16,
        /// The KMS's own error messages.
        message: String,
    },
    /// The KMS answered something else than its API says.
    #[error("kms: transit {0}: unexpected answer")]
    BadAnswer(&'static str),
    /// A sealed keyring file is unusable.
    #[error("keyring file {path}: {problem}")]
    Sealed {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The opened keyring is unusable.
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transit(token_file: &Path) -> Transit {
        Transit::new(&KmsConfig {
            address: "http://127.0.0.1:8200".to_owned(),
            key: "pseudonym".to_owned(),
            mount: default_mount(),
            token_file: Some(token_file.to_owned()),
            ca_file: None,
            timeout_ms: default_timeout_ms(),
        })
        .expect("a client")
    }

    /// Found in review: the token file, which opens the keyring, was read without the checks
    /// a keyring file gets (owner, mode, no symbolic link).
    #[cfg(unix)]
    #[test]
    fn the_token_file_is_checked_as_a_keyring_is() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bao-token");
        std::fs::write(&file, "s.token\n").expect("written");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = transit(&file).token().expect_err("readable by others");
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let token = transit(&file).token().expect("private");
        assert_eq!(token.expose_secret(), "s.token");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let refused = transit(&link).token().expect_err("a link");
        assert!(
            refused.to_string().contains("not a regular file"),
            "{refused}"
        );
    }

    /// Found in review: a plain-http KMS address sent the token across the network in clear.
    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        for good in [
            "https://bao.internal:8200",
            "http://127.0.0.1:8200",
            "http://localhost:8200",
            "http://[::1]:8200",
        ] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in [
            "http://bao.internal:8200",
            "http://10.0.0.1:8200",
            "ftp://127.0.0.1",
        ] {
            assert!(
                matches!(check_address(bad), Err(KmsError::InsecureAddress(_))),
                "{bad}"
            );
        }
    }
}
