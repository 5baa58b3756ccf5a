//! API keys: who may call, which operations, in which domains.
//!
//! The server stores only the SHA-256 digest of each key. File format (`api_keys_file`):
//!
//! ```toml
//! [[api_keys]]
//! name = "etl-batch"                 # shows in logs and metrics instead of the key
//! sha256 = "<hex digest of the key>"
//! operations = ["pseudonymize"]      # and/or "reidentify", "rewrap"
//! domains = ["vin", "crm.email"]     # or ["*"] for every domain
//! max_concurrent_requests = 32       # optional; else limits.max_concurrent_requests_per_key
//! max_values_per_second = 500000     # optional; else limits.max_values_per_second_per_key
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use pseudonym_client::wire::{Domain, InvalidDomain};

/// What a caller asks the service to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Values to tokens.
    Pseudonymize,
    /// Tokens to values: the privileged operation.
    Reidentify,
    /// Tokens of older key versions to tokens of the primary one, without plaintext.
    Rewrap,
}

impl Operation {
    /// The name used in the key file, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Pseudonymize => "pseudonymize",
            Operation::Reidentify => "reidentify",
            Operation::Rewrap => "rewrap",
        }
    }
}

/// One entry of the key file, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// A name for the key's holder; used in logs instead of the key.
    pub name: String,
    /// Hex SHA-256 digest of the key.
    pub sha256: String,
    /// Operations the key may call.
    pub operations: BTreeSet<Operation>,
    /// Domains the key may use; `"*"` means all.
    pub domains: BTreeSet<String>,
    /// Requests this key may have in flight at once; without it,
    /// `limits.max_concurrent_requests_per_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<usize>,
    /// Values (or pseudonyms) this key may send per second, on average over a second; without
    /// it, `limits.max_values_per_second_per_key` (0: no budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_values_per_second: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeysFile {
    #[serde(default)]
    api_keys: Vec<ApiKeyEntry>,
}

/// An authenticated caller: the entry its key matched.
#[derive(Debug, Clone)]
pub struct Caller {
    name: String,
    operations: BTreeSet<Operation>,
    domains: DomainScope,
    max_concurrent_requests: Option<usize>,
    max_values_per_second: Option<u32>,
}

#[derive(Debug, Clone)]
enum DomainScope {
    Any,
    Only(BTreeSet<String>),
}

/// A caller asked for something its key does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// The operation is not in the key's list.
    #[error("this API key may not {}", .0.as_str())]
    Operation(Operation),
    /// The domain is not in the key's list.
    #[error("this API key may not use this domain")]
    Domain,
}

impl Caller {
    /// The key's name from the key file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's own limit of requests in flight, if its entry sets one.
    pub fn max_concurrent_requests(&self) -> Option<usize> {
        self.max_concurrent_requests
    }

    /// The key's own budget of values per second, if its entry sets one.
    pub fn max_values_per_second(&self) -> Option<u32> {
        self.max_values_per_second
    }

    /// Checks that the key may do `operation` in `domain`.
    pub fn authorize(&self, operation: Operation, domain: Domain<'_>) -> Result<(), Forbidden> {
        if !self.operations.contains(&operation) {
            return Err(Forbidden::Operation(operation));
        }
        match &self.domains {
            DomainScope::Any => Ok(()),
            DomainScope::Only(domains) if domains.contains(domain.as_str()) => Ok(()),
            DomainScope::Only(_) => Err(Forbidden::Domain),
        }
    }
}

/// The known API keys, by digest.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], Arc<Caller>)>,
}

impl ApiKeys {
    /// Reads and checks a key file.
    pub fn load(path: &Path) -> Result<Self, ApiKeysError> {
        ApiKeys::checked(read_entries(path)?, path)
    }

    /// Checks entries given in memory (tests, fuzzing, embedding): no file is read.
    pub fn new(entries: Vec<ApiKeyEntry>) -> Result<Self, ApiKeysError> {
        ApiKeys::checked(entries, Path::new("(in memory)"))
    }

    /// The keys of `entries`, checked as one file (`path`, for messages) is.
    fn checked(entries: Vec<ApiKeyEntry>, path: &Path) -> Result<Self, ApiKeysError> {
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            let bad = |problem| ApiKeysError::Entry {
                path: path.to_owned(),
                name: entry.name.clone(),
                problem,
            };
            let mut digest = [0u8; 32];
            hex::decode_to_slice(entry.sha256.trim(), &mut digest)
                .map_err(|_| bad("sha256 must be 64 hex digits"))?;
            if entry.operations.is_empty() {
                return Err(bad("operations is empty"));
            }
            let domains = if entry.domains.contains("*") {
                DomainScope::Any
            } else if entry.domains.is_empty() {
                return Err(bad("domains is empty (use [\"*\"] for every domain)"));
            } else if entry.domains.iter().any(|d| Domain::new(d).is_err()) {
                return Err(bad(InvalidDomain::MESSAGE));
            } else {
                DomainScope::Only(entry.domains.clone())
            };
            if keys.iter().any(|(d, _)| d == &digest) {
                return Err(bad("the same key digest appears twice"));
            }
            if keys
                .iter()
                .any(|(_, c): &(_, Arc<Caller>)| c.name == entry.name)
            {
                return Err(bad(
                    "the same name appears twice (names label logs, audit lines and per-key limits)",
                ));
            }
            if entry.max_concurrent_requests == Some(0) {
                return Err(bad("max_concurrent_requests must be at least 1"));
            }
            if entry.max_values_per_second == Some(0) {
                return Err(bad("max_values_per_second must be at least 1"));
            }
            let caller = Caller {
                name: entry.name,
                operations: entry.operations,
                domains,
                max_concurrent_requests: entry.max_concurrent_requests,
                max_values_per_second: entry.max_values_per_second,
            };
            keys.push((digest, Arc::new(caller)));
        }
        Ok(ApiKeys { keys })
    }

    /// How many keys are known.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is known (every request will be refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The caller whose key this is, if any. Every stored digest is compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Option<&Arc<Caller>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (stored, caller) in &self.keys {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(caller);
            }
        }
        found
    }
}

/// A new random API key (`pk_` and 43 base64url characters) and the file entry that admits it.
pub fn generate_key(
    name: &str,
    operations: BTreeSet<Operation>,
    domains: BTreeSet<String>,
) -> (SecretString, ApiKeyEntry) {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    crate::keyring::fill_from_os(bytes.as_mut());
    let key = SecretString::from(format!("pk_{}", URL_SAFE_NO_PAD.encode(bytes.as_ref())));
    let entry = ApiKeyEntry {
        name: name.to_owned(),
        sha256: hex::encode(Sha256::digest(key.expose_secret().as_bytes())),
        operations,
        domains,
        max_concurrent_requests: None,
        max_values_per_second: None,
    };
    (key, entry)
}

/// Appends `entry` to the key file at `path`, creating it if needed.
pub fn append_entry(path: &Path, entry: ApiKeyEntry) -> Result<(), ApiKeysError> {
    let mut entries = if path.exists() {
        read_entries(path)?
    } else {
        Vec::new()
    };
    entries.push(entry);
    let text = toml::to_string(&ApiKeysFile { api_keys: entries }).map_err(|error| {
        ApiKeysError::Syntax {
            path: path.to_owned(),
            message: error.to_string(),
        }
    })?;
    crate::keyring::write_private_file(path, text.as_bytes()).map_err(|source| ApiKeysError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The entries of the file, which no one but its owner may write: an entry grants rights.
fn read_entries(path: &Path) -> Result<Vec<ApiKeyEntry>, ApiKeysError> {
    let text = crate::private_file::read(path, crate::private_file::Access::NoOtherWriters)
        .map_err(ApiKeysError::File)?;
    let file: ApiKeysFile = toml::from_str(&text).map_err(|error| ApiKeysError::Syntax {
        path: path.to_owned(),
        message: error.message().to_owned(),
    })?;
    Ok(file.api_keys)
}

/// Why the API key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeysError {
    /// The API key file could not be read or written.
    #[error("API key file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The API key file is not a regular file of this user's that only it may write.
    #[error("API key file {0}")]
    File(crate::private_file::FileError),
    /// The API key file is not TOML of the documented shape.
    #[error("API key file {path}: {message}")]
    Syntax {
        /// The file.
        path: std::path::PathBuf,
        /// The parser's message (the file holds digests, not keys).
        message: String,
    },
    /// An entry of the API key file is not usable.
    #[error("API key file {path}: key {name:?}: {problem}")]
    Entry {
        /// The file.
        path: std::path::PathBuf,
        /// The entry's name.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
        items.iter().cloned().collect()
    }

    #[test]
    fn keys_authenticate_and_are_scoped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.toml");
        let (writer, entry) = generate_key(
            "writer",
            set(&[Operation::Pseudonymize]),
            set(&["vin".to_owned()]),
        );
        append_entry(&path, entry).expect("append");
        let (admin, entry) = generate_key(
            "admin",
            set(&[Operation::Pseudonymize, Operation::Reidentify]),
            set(&["*".to_owned()]),
        );
        append_entry(&path, entry).expect("append");

        let keys = ApiKeys::load(&path).expect("load");
        assert_eq!(keys.len(), 2);
        let vin = Domain::new("vin").expect("valid");
        let email = Domain::new("email").expect("valid");

        let caller = keys.authenticate(writer.expose_secret()).expect("known");
        assert_eq!(caller.name(), "writer");
        assert_eq!(caller.authorize(Operation::Pseudonymize, vin), Ok(()));
        assert_eq!(
            caller.authorize(Operation::Reidentify, vin),
            Err(Forbidden::Operation(Operation::Reidentify))
        );
        assert_eq!(
            caller.authorize(Operation::Pseudonymize, email),
            Err(Forbidden::Domain)
        );

        let caller = keys.authenticate(admin.expose_secret()).expect("known");
        assert_eq!(caller.authorize(Operation::Reidentify, email), Ok(()));
        assert!(keys.authenticate("pk_not-a-key").is_none());
    }

    #[test]
    fn bad_entries_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.toml");
        std::fs::write(
            &path,
            "[[api_keys]]\nname = \"etl\"\nsha256 = \"abc\"\noperations = [\"reidentify\"]\ndomains = [\"*\"]\n",
        )
        .expect("write");
        let message = ApiKeys::load(&path).expect_err("short digest").to_string();
        assert!(
            message.contains("\"etl\"") && message.contains("64 hex"),
            "{message}"
        );
    }

    /// Names label logs, audit lines and per-key limits: two keys may not share one.
    #[test]
    fn two_keys_with_one_name_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.toml");
        for _ in 0..2 {
            let (_, entry) = generate_key(
                "etl",
                [Operation::Pseudonymize].into(),
                ["*".to_owned()].into(),
            );
            append_entry(&path, entry).expect("append");
        }
        let message = ApiKeys::load(&path)
            .expect_err("one name twice")
            .to_string();
        assert!(message.contains("the same name appears twice"), "{message}");
    }
}
