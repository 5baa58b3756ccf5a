//! Numbered key versions and the primary one, loaded from TOML and written by `pseudonymd keygen`.
//!
//! File format (also accepted as the content of the `PSEUDONYM_KEYRING` environment variable):
//!
//! ```toml
//! primary = 2
//! # Optional: the highest version this ring ever held, when it retired it; a new version is
//! # numbered after it, so a number never names two secrets.
//! highest_version = 3
//!
//! [[keys]]
//! version = 1
//! secret = "<32 random bytes, base64url without padding>"
//!
//! [[keys]]
//! version = 2
//! secret = "..."
//!
//! # Optional: the replaced service's key, imported with `keygen --import-lambda-secret`, so its
//! # tokens re-identify and rewrap (see `lambda`). Same encodings as its secret JSON.
//! [seed_key]   # `[lambda_key]` is read too; written so from the next release
//! secret_key = "<16 or 32 bytes, standard base64>"
//! nonce_key = "<standard base64>"
//! nonce_start = 3
//! nonce_end = 15
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::lambda::{LambdaKey, LambdaKeyEntry, LambdaKeyError};
use crate::private_file::{self, Access, FileError};

/// The highest version number a keyring file may name: far below `u32::MAX`, so that versions
/// added after it never wrap around to a number in use.
pub const MAX_VERSION: u32 = 1 << 31;

/// Bytes in one key version's secret.
pub const KEY_BYTES: usize = 32;

/// One key version's 32 secret bytes: zeroized on drop, never shown by `Debug`.
pub struct SecretKey(SecretBox<[u8; KEY_BYTES]>);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = Box::new([0u8; KEY_BYTES]);
        fill_from_os(bytes.as_mut());
        SecretKey(SecretBox::new(bytes))
    }

    /// Access to the bytes, for deriving subkeys.
    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        self.0.expose_secret()
    }

    fn from_base64(encoded: &str) -> Result<Self, usize> {
        let decoded = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(encoded.trim())
                .map_err(|_| usize::MAX)?,
        );
        let mut bytes = Box::new([0u8; KEY_BYTES]);
        if decoded.len() != KEY_BYTES {
            return Err(decoded.len());
        }
        bytes.copy_from_slice(&decoded);
        Ok(SecretKey(SecretBox::new(bytes)))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

/// Key versions and which one makes new pseudonyms.
#[derive(Debug)]
pub struct Keyring {
    primary: u32,
    keys: BTreeMap<u32, SecretKey>,
    /// The highest version the ring ever held (retired ones included): tokens of a retired
    /// version must never open under a new secret of the same number.
    highest: u32,
    lambda: Option<LambdaKey>,
}

/// Why a keyring could not be loaded or written. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file could not be read or written.
    #[error("keyring file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a regular file of this user's that only it may access.
    #[error("keyring file {0}")]
    File(#[from] FileError),
    /// Not TOML of the documented shape. The parser's own message is withheld: it may quote the
    /// file, and the file holds keys.
    #[error("{source_name}: not a valid keyring (TOML error at line {line}, column {column})")]
    Syntax {
        /// The file or variable.
        source_name: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// A secret that is not base64url or not 32 bytes.
    #[error(
        "key version {version}: secret must be {KEY_BYTES} bytes in base64url without padding{}",
        decoded_len.map(|n| format!(" (it decodes to {n} bytes)")).unwrap_or_default()
    )]
    BadSecret {
        /// The version.
        version: u32,
        /// How many bytes it decoded to, when it decoded.
        decoded_len: Option<usize>,
    },
    /// Version 0 is reserved.
    #[error("key version 0 is not allowed: versions start at 1")]
    VersionZero,
    /// A version (or `highest_version`) above [`MAX_VERSION`].
    #[error("key version {0} is above the highest allowed, {MAX_VERSION}")]
    VersionTooHigh(u32),
    /// The same version twice.
    #[error("key version {0} appears more than once")]
    DuplicateVersion(u32),
    /// No key at all.
    #[error("the keyring holds no keys")]
    Empty,
    /// `primary` names a version the ring does not hold.
    #[error("primary version {0} is not among the keys")]
    MissingPrimary(u32),
    /// A version the ring does not hold.
    #[error("key version {0} is not among the keys")]
    MissingVersion(u32),
    /// The primary version cannot be retired.
    #[error("key version {0} is the primary; make another version primary before retiring it")]
    RetirePrimary(u32),
    /// The replaced service's key is unusable.
    #[error("{source_name}: the replaced service's key: {error}")]
    BadLambdaKey {
        /// The file or variable.
        source_name: String,
        /// What is wrong.
        error: LambdaKeyError,
    },
    /// A second, different key of the replaced service: its tokens name no key, so only one fits.
    #[error(
        "the keyring already holds another key of the replaced service; retire it first (--retire-lambda)"
    )]
    LambdaKeyPresent,
    /// No key of the replaced service to retire.
    #[error("the keyring holds no key of the replaced service")]
    NoLambdaKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    primary: u32,
    #[serde(default)]
    highest_version: u32,
    keys: Vec<KeyEntry>,
    /// Written `[seed_key]` (what the previous release reads) until the next release, which
    /// writes `[lambda_key]`; both are read.
    #[serde(default, rename = "seed_key", alias = "lambda_key")]
    lambda_key: Option<LambdaKeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    version: u32,
    secret: SecretString,
}

impl Keyring {
    /// A new ring with one random key, version 1, as primary.
    pub fn generate() -> Self {
        Keyring {
            primary: 1,
            keys: BTreeMap::from([(1, SecretKey::generate())]),
            highest: 1,
            lambda: None,
        }
    }

    /// Parses the TOML format; `source_name` names the file or variable in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, KeyringError> {
        let file: KeyringFile = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let before = &text[..offset.min(text.len())];
            KeyringError::Syntax {
                source_name: source_name.to_owned(),
                line: before.matches('\n').count() + 1,
                column: before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
            }
        })?;
        if file.highest_version > MAX_VERSION {
            return Err(KeyringError::VersionTooHigh(file.highest_version));
        }
        let mut keys = BTreeMap::new();
        for entry in file.keys {
            if entry.version == 0 {
                return Err(KeyringError::VersionZero);
            }
            if entry.version > MAX_VERSION {
                return Err(KeyringError::VersionTooHigh(entry.version));
            }
            let key = SecretKey::from_base64(entry.secret.expose_secret()).map_err(|len| {
                KeyringError::BadSecret {
                    version: entry.version,
                    decoded_len: (len != usize::MAX).then_some(len),
                }
            })?;
            if keys.insert(entry.version, key).is_some() {
                return Err(KeyringError::DuplicateVersion(entry.version));
            }
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        if !keys.contains_key(&file.primary) {
            return Err(KeyringError::MissingPrimary(file.primary));
        }
        let lambda = file
            .lambda_key
            .as_ref()
            .map(LambdaKey::from_entry)
            .transpose()
            .map_err(|error| KeyringError::BadLambdaKey {
                source_name: source_name.to_owned(),
                error,
            })?;
        let highest = keys.keys().next_back().map_or(0, |v| *v);
        Ok(Keyring {
            primary: file.primary,
            keys,
            highest: highest.max(file.highest_version),
            lambda,
        })
    }

    /// Loads a keyring file, refusing one that group or others may access (see
    /// [`private_file`]).
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let text = private_file::read(path, Access::OwnerOnly)?;
        Keyring::from_toml(&text, &path.display().to_string())
    }

    /// Writes the ring to `path` with mode 0600, replacing the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        write_private_file(path, self.to_toml().as_bytes()).map_err(|source| KeyringError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The file format's text. Holds the keys: keep it out of logs.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(format!(
            "# pseudonym keyring: secret key material, keep mode 0600.\n\
             # Pseudonyms made with a version can only be re-identified while it stays here.\n\
             primary = {}\n",
            self.primary
        ));
        // Written only once it says more than the keys do, so files stay as they were until
        // the highest version is retired.
        if self.keys.keys().next_back() != Some(&self.highest) {
            text.push_str(&format!("highest_version = {}\n", self.highest));
        }
        for (version, key) in &self.keys {
            text.push_str(&format!("\n[[keys]]\nversion = {version}\nsecret = \""));
            URL_SAFE_NO_PAD.encode_string(key.expose(), &mut text);
            text.push_str("\"\n");
        }
        if let Some(lambda) = &self.lambda {
            text.push_str(
                "\n# The replaced service's key (AWS sample): its tokens re-identify and rewrap.\n",
            );
            lambda.append_toml(&mut text);
        }
        text
    }

    /// Adds a new random version after the highest one the ring ever held (retired ones
    /// included, so no number names two secrets) and returns its number; refused past
    /// [`MAX_VERSION`], since the file would then no longer load.
    pub fn add_version(&mut self, make_primary: bool) -> Result<u32, KeyringError> {
        let version = self.highest + 1;
        if version > MAX_VERSION {
            return Err(KeyringError::VersionTooHigh(version));
        }
        self.highest = version;
        self.keys.insert(version, SecretKey::generate());
        if make_primary {
            self.primary = version;
        }
        Ok(version)
    }

    /// Makes an existing version the primary.
    pub fn set_primary(&mut self, version: u32) -> Result<(), KeyringError> {
        if !self.keys.contains_key(&version) {
            return Err(KeyringError::MissingPrimary(version));
        }
        self.primary = version;
        Ok(())
    }

    /// Removes a version: its tokens stop re-identifying (`unknown_key_version`). The primary
    /// cannot be retired.
    pub fn retire(&mut self, version: u32) -> Result<(), KeyringError> {
        if version == self.primary {
            return Err(KeyringError::RetirePrimary(version));
        }
        self.keys
            .remove(&version)
            .map(drop)
            .ok_or(KeyringError::MissingVersion(version))
    }

    /// Adds the replaced service's key; `false` if the ring already held this very key. A
    /// different one is refused, since its tokens do not say which key made them.
    pub fn import_lambda_key(&mut self, key: LambdaKey) -> Result<bool, KeyringError> {
        match &self.lambda {
            Some(present) if present.same_as(&key) => Ok(false),
            Some(_) => Err(KeyringError::LambdaKeyPresent),
            None => {
                self.lambda = Some(key);
                Ok(true)
            }
        }
    }

    /// Removes the replaced service's key: its tokens then fail with `unknown_key_version`.
    pub fn retire_lambda_key(&mut self) -> Result<(), KeyringError> {
        self.lambda
            .take()
            .map(drop)
            .ok_or(KeyringError::NoLambdaKey)
    }

    /// The replaced service's key, if imported.
    pub fn lambda_key(&self) -> Option<&LambdaKey> {
        self.lambda.as_ref()
    }

    /// The version new pseudonyms are made with.
    pub fn primary(&self) -> u32 {
        self.primary
    }

    /// Every version and its key, in ascending order.
    pub fn keys(&self) -> impl Iterator<Item = (u32, &SecretKey)> {
        self.keys.iter().map(|(version, key)| (*version, key))
    }
}

/// Fills `bytes` from the operating system's random source, as long-term secrets must be (not
/// from a user-space generator seeded from it).
pub fn fill_from_os(bytes: &mut [u8]) {
    OsRng
        .try_fill_bytes(bytes)
        .expect("the operating system's random source is available");
}

/// Writes `contents` readable by the owner only, replacing `path` atomically and durably.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    private_file::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn ring(body: &str) -> Result<Keyring, KeyringError> {
        Keyring::from_toml(body, "test")
    }

    /// Found in review: `--add` after `--retire` of the highest version handed out its number
    /// again with a new secret, so that version's old tokens failed forever.
    #[test]
    fn a_version_number_is_never_given_to_a_second_secret() {
        let mut retired = Keyring::generate();
        assert_eq!(
            retired
                .add_version(false)
                .expect("a version number is free"),
            2
        );
        retired.retire(2).expect("not the primary");
        let reloaded = Keyring::from_toml(&retired.to_toml(), "test").expect("own format");
        assert!(reloaded.to_toml().contains("highest_version = 2"));
        for mut again in [retired, reloaded] {
            assert_eq!(
                again.add_version(false).expect("a version number is free"),
                3,
                "2 is spent"
            );
            assert!(
                !again.to_toml().contains("highest_version"),
                "said by the keys again"
            );
        }
        let file = format!(
            "primary = 1\nhighest_version = 7\n[[keys]]\nversion = 1\nsecret = \"{KEY_A}\"\n"
        );
        assert_eq!(
            ring(&file)
                .expect("valid")
                .add_version(true)
                .expect("a version number is free"),
            8
        );
        let at_the_top = file.replace(
            "highest_version = 7",
            &format!("highest_version = {MAX_VERSION}"),
        );
        let mut full = ring(&at_the_top).expect("the highest version may be named");
        assert!(matches!(
            full.add_version(true),
            Err(KeyringError::VersionTooHigh(_))
        ));
        assert_eq!(full.primary(), 1, "a refused version changes nothing");
        let too_high = file.replace("highest_version = 7", "highest_version = 4294967295");
        assert!(matches!(
            ring(&too_high),
            Err(KeyringError::VersionTooHigh(_))
        ));
    }

    #[test]
    fn a_generated_ring_survives_its_own_format() {
        let mut original = Keyring::generate();
        assert_eq!(
            original
                .add_version(true)
                .expect("a version number is free"),
            2
        );
        let reloaded = ring(&original.to_toml()).expect("own format parses");
        assert_eq!(reloaded.primary(), 2);
        let versions: Vec<u32> = reloaded.keys().map(|(v, _)| v).collect();
        assert_eq!(versions, [1, 2]);
        for ((_, a), (_, b)) in original.keys().zip(reloaded.keys()) {
            assert_eq!(a.expose(), b.expose());
        }
    }

    #[test]
    fn problems_are_named() {
        let short = ring("primary = 1\n[[keys]]\nversion = 1\nsecret = \"AAEC\"\n");
        assert!(matches!(
            short,
            Err(KeyringError::BadSecret {
                version: 1,
                decoded_len: Some(3)
            })
        ));
        let dup = format!(
            "primary = 1\n[[keys]]\nversion = 1\nsecret = \"{KEY_A}\"\n[[keys]]\nversion = 1\nsecret = \"{KEY_A}\"\n"
        );
        assert!(matches!(ring(&dup), Err(KeyringError::DuplicateVersion(1))));
        let missing = format!("primary = 2\n[[keys]]\nversion = 1\nsecret = \"{KEY_A}\"\n");
        assert!(matches!(
            ring(&missing),
            Err(KeyringError::MissingPrimary(2))
        ));
        assert!(matches!(
            ring("primary = 1\nkeys = []\n"),
            Err(KeyringError::Empty)
        ));
    }

    #[test]
    fn syntax_errors_point_at_the_line_without_quoting_it() {
        let text = format!("primary = 1\n[[keys]]\nversion = 1\nsecret = {KEY_A}\n");
        let error = ring(&text).expect_err("unquoted secret is invalid TOML");
        let message = error.to_string();
        assert!(message.contains("line 4"), "{message}");
        assert!(!message.contains(KEY_A), "{message}");
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let keyring = ring(&format!(
            "primary = 1\n[[keys]]\nversion = 1\nsecret = \"{KEY_A}\"\n"
        ))
        .expect("valid");
        let shown = format!("{keyring:?}");
        assert!(shown.contains("REDACTED"));
        assert!(!shown.contains("[0, 1, 2"), "{shown}");
    }

    #[cfg(unix)]
    #[test]
    fn files_open_to_others_are_refused_and_saved_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.toml");
        Keyring::generate().save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        Keyring::load(&path).expect("private file loads");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            Keyring::load(&path),
            Err(KeyringError::File(FileError::Permissions {
                mode: 0o644,
                ..
            }))
        ));
    }
}
