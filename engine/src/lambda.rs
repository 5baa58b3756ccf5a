//! Tokens of the Lambda service (the AWS sample this service replaces), read and written byte for
//! byte, so a data lake's existing pseudonyms re-identify here and can be rewrapped into ours.
//!
//! The format, as that service documents it (its code is not used here):
//!
//! - token: standard base64, padded, of `nonce (12) ‖ AES-GCM-SIV(key, nonce, value)`, where
//!   AES-GCM-SIV is RFC 8452 with empty associated data, its output `ciphertext ‖ tag (16)`,
//!   and the value its UTF-8 bytes;
//! - deterministic nonce: the 12 ASCII characters `[nonce_start, nonce_end)` of the lowercase hex
//!   HMAC-SHA256 of the value under the nonce key;
//! - randomized nonce: 12 random bytes;
//! - key: the JSON its `key_generator.py` stores in Secrets Manager, `encodedSecretKey` (base64,
//!   16 or 32 bytes), `encodedNonceKey` (base64), `nonceStrPos` and `nonceEndPos`.
//!
//! Such tokens carry no key version and no domain: they belong to the one imported key and to the
//! service's `compat_domain`. They never contain a `.`, which every native token does.
//!
//! Weaker than native tokens: the deterministic nonce is 48 bits of an HMAC under (in the
//! sample's generator) a 64-bit key, and nothing binds a token to a domain.

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes128GcmSiv, Aes256GcmSiv, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use pseudonym_client::{ItemErrorCode, Mode};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Bytes of the nonce at the front of every token.
pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Characters of a lowercase hex HMAC-SHA256, the deterministic nonce's source.
const HEX_LEN: usize = 64;

/// The replaced service's key: AES-GCM-SIV key, nonce key and nonce position. Zeroized on drop,
/// never shown by `Debug`.
pub struct LambdaKey {
    secret_key: SecretBox<Vec<u8>>,
    nonce_key: SecretBox<Vec<u8>>,
    nonce_start: usize,
}

/// Why a key of the replaced service cannot be used. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LambdaKeyError {
    /// A field that is not standard base64.
    #[error("{field}: not standard base64")]
    NotBase64 {
        /// The field's name.
        field: &'static str,
    },
    /// An AES key of another size than AES-GCM-SIV takes.
    #[error("{field}: must decode to 16 or 32 bytes (it decodes to {len})")]
    SecretKeyLength {
        /// The field's name.
        field: &'static str,
        /// Its decoded length.
        len: usize,
    },
    /// An empty nonce key.
    #[error("{field}: must not be empty")]
    EmptyNonceKey {
        /// The field's name.
        field: &'static str,
    },
    /// A nonce position that does not cut 12 characters out of 64.
    #[error(
        "{start_field} and {end_field} must cut 12 characters out of the 64-character HMAC (got {start}..{end})"
    )]
    NoncePosition {
        /// The start field's name.
        start_field: &'static str,
        /// The end field's name.
        end_field: &'static str,
        /// The start.
        start: i64,
        /// The end.
        end: i64,
    },
    /// Not JSON of the documented shape; the parser's message is withheld, as it may quote keys.
    #[error(
        "not the replaced service's key JSON (encodedSecretKey, encodedNonceKey, nonceStrPos, nonceEndPos): {category} error at line {line}, column {column}"
    )]
    Json {
        /// `syntax`, `data` or `eof`.
        category: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
}

/// The key as the replaced service's Secrets Manager secret holds it (`key_generator.py`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretJson {
    encoded_secret_key: SecretString,
    encoded_nonce_key: SecretString,
    nonce_str_pos: i64,
    nonce_end_pos: i64,
}

/// The key as a keyring file holds it (`[seed_key]`, the table's name until the next release;
/// `[lambda_key]` is read too), in the same encodings as the secret JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LambdaKeyEntry {
    secret_key: SecretString,
    nonce_key: SecretString,
    nonce_start: i64,
    nonce_end: i64,
}

impl LambdaKey {
    /// Reads the replaced service's secret JSON (the `SecretString` of its Secrets Manager
    /// secret). Unknown fields are ignored, as that service ignored them.
    pub fn from_secret_json(json: &str) -> Result<Self, LambdaKeyError> {
        let secret: SecretJson =
            serde_json::from_str(json).map_err(|error| LambdaKeyError::Json {
                category: match error.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                        "syntax"
                    }
                    serde_json::error::Category::Data => "data",
                    serde_json::error::Category::Eof => "eof",
                },
                line: error.line(),
                column: error.column(),
            })?;
        LambdaKey::new(
            (&secret.encoded_secret_key, "encodedSecretKey"),
            (&secret.encoded_nonce_key, "encodedNonceKey"),
            (secret.nonce_str_pos, "nonceStrPos"),
            (secret.nonce_end_pos, "nonceEndPos"),
        )
    }

    pub(crate) fn from_entry(entry: &LambdaKeyEntry) -> Result<Self, LambdaKeyError> {
        LambdaKey::new(
            (&entry.secret_key, "seed_key.secret_key"),
            (&entry.nonce_key, "seed_key.nonce_key"),
            (entry.nonce_start, "seed_key.nonce_start"),
            (entry.nonce_end, "seed_key.nonce_end"),
        )
    }

    /// Appends the `[lambda_key]` table of a keyring file to `out`. Holds the key.
    pub(crate) fn append_toml(&self, out: &mut Zeroizing<String>) {
        out.push_str("[seed_key]\nsecret_key = \"");
        STANDARD.encode_string(self.secret_key.expose_secret(), out);
        out.push_str("\"\nnonce_key = \"");
        STANDARD.encode_string(self.nonce_key.expose_secret(), out);
        out.push_str(&format!(
            "\"\nnonce_start = {}\nnonce_end = {}\n",
            self.nonce_start,
            self.nonce_start + NONCE_LEN
        ));
    }

    fn new(
        (secret_key, secret_field): (&SecretString, &'static str),
        (nonce_key, nonce_field): (&SecretString, &'static str),
        (start, start_field): (i64, &'static str),
        (end, end_field): (i64, &'static str),
    ) -> Result<Self, LambdaKeyError> {
        let decode = |text: &SecretString, field| {
            STANDARD
                .decode(text.expose_secret().trim())
                .map(|bytes| SecretBox::new(Box::new(bytes)))
                .map_err(|_| LambdaKeyError::NotBase64 { field })
        };
        let secret_key = decode(secret_key, secret_field)?;
        let len = secret_key.expose_secret().len();
        if len != 16 && len != 32 {
            return Err(LambdaKeyError::SecretKeyLength {
                field: secret_field,
                len,
            });
        }
        let nonce_key = decode(nonce_key, nonce_field)?;
        if nonce_key.expose_secret().is_empty() {
            return Err(LambdaKeyError::EmptyNonceKey { field: nonce_field });
        }
        let last_start = (HEX_LEN - NONCE_LEN) as i64;
        let position_ok = (0..=last_start).contains(&start) && end == start + NONCE_LEN as i64;
        if !position_ok {
            return Err(LambdaKeyError::NoncePosition {
                start_field,
                end_field,
                start,
                end,
            });
        }
        Ok(LambdaKey {
            secret_key,
            nonce_key,
            nonce_start: start as usize,
        })
    }

    /// Whether two keys are the same key.
    pub fn same_as(&self, other: &LambdaKey) -> bool {
        let secret = self
            .secret_key
            .expose_secret()
            .ct_eq(other.secret_key.expose_secret());
        let nonce = self
            .nonce_key
            .expose_secret()
            .ct_eq(other.nonce_key.expose_secret());
        bool::from(secret & nonce) && self.nonce_start == other.nonce_start
    }
}

impl std::fmt::Debug for LambdaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LambdaKey([REDACTED])")
    }
}

/// The two modes the replaced service had (it had no `hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaMode {
    /// The nonce comes from an HMAC of the value: the same value, the same token.
    Deterministic,
    /// A random nonce: a new token every time.
    Randomized,
}

impl From<LambdaMode> for Mode {
    fn from(mode: LambdaMode) -> Mode {
        match mode {
            LambdaMode::Deterministic => Mode::Deterministic,
            LambdaMode::Randomized => Mode::Randomized,
        }
    }
}

impl TryFrom<Mode> for LambdaMode {
    type Error = NoSuchLambdaMode;

    fn try_from(mode: Mode) -> Result<LambdaMode, NoSuchLambdaMode> {
        match mode {
            Mode::Deterministic => Ok(LambdaMode::Deterministic),
            Mode::Randomized => Ok(LambdaMode::Randomized),
            Mode::Hash | Mode::FormatPreserving => Err(NoSuchLambdaMode),
        }
    }
}

/// `hash` or `format-preserving`, which the replaced service did not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the replaced service's tokens are deterministic or randomized, never hash or format-preserving"
)]
pub struct NoSuchLambdaMode;

/// The cipher and nonce MAC of a [`LambdaKey`], set up once and used through `&self`.
pub struct LambdaCipher {
    aead: Aead,
    /// Keyed once; cloned per value.
    nonce_mac: Hmac<Sha256>,
    nonce_start: usize,
}

enum Aead {
    Aes128(Box<Aes128GcmSiv>),
    Aes256(Box<Aes256GcmSiv>),
}

impl LambdaCipher {
    /// Sets up the cipher of `key`.
    pub fn new(key: &LambdaKey) -> Self {
        let secret = key.secret_key.expose_secret();
        let aead = if secret.len() == 16 {
            Aead::Aes128(Box::new(
                Aes128GcmSiv::new_from_slice(secret).expect("checked to be 16 bytes"),
            ))
        } else {
            Aead::Aes256(Box::new(
                Aes256GcmSiv::new_from_slice(secret).expect("checked to be 32 bytes"),
            ))
        };
        LambdaCipher {
            aead,
            nonce_mac: <Hmac<Sha256> as Mac>::new_from_slice(key.nonce_key.expose_secret())
                .expect("HMAC takes keys of any length"),
            nonce_start: key.nonce_start,
        }
    }

    /// The token of `value` in `mode`. `buffer` is scratch space, reused across a batch.
    pub fn seal(&self, mode: LambdaMode, value: &[u8], buffer: &mut Vec<u8>) -> String {
        buffer.clear();
        buffer.resize(NONCE_LEN, 0);
        match mode {
            LambdaMode::Randomized => rand::rng().fill_bytes(buffer),
            LambdaMode::Deterministic => buffer.copy_from_slice(&self.deterministic_nonce(value)),
        }
        buffer.extend_from_slice(value);
        let (nonce, text) = buffer.split_at_mut(NONCE_LEN);
        let tag = self.encrypt(Nonce::from_slice(nonce), text);
        buffer.extend_from_slice(&tag);
        STANDARD.encode(buffer.as_slice())
    }

    /// The value behind `token` and the mode that made it. `buffer` is scratch space.
    pub fn open(
        &self,
        token: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<(LambdaMode, String), ItemErrorCode> {
        buffer.clear();
        STANDARD
            .decode_vec(token, buffer)
            .map_err(|_| ItemErrorCode::InvalidToken)?;
        if buffer.len() < NONCE_LEN + TAG_LEN {
            return Err(ItemErrorCode::InvalidToken);
        }
        let (nonce, sealed) = buffer.split_at_mut(NONCE_LEN);
        let (text, tag) = sealed.split_at_mut(sealed.len() - TAG_LEN);
        self.decrypt(Nonce::from_slice(nonce), text, Tag::from_slice(tag))
            .map_err(|()| ItemErrorCode::InvalidToken)?;
        let mode = if bool::from(nonce.ct_eq(&self.deterministic_nonce(text))) {
            LambdaMode::Deterministic
        } else {
            LambdaMode::Randomized
        };
        let value = std::str::from_utf8(text).map_err(|_| ItemErrorCode::InvalidToken)?;
        Ok((mode, value.to_owned()))
    }

    fn deterministic_nonce(&self, value: &[u8]) -> [u8; NONCE_LEN] {
        let digest: Zeroizing<[u8; 32]> = Zeroizing::new(
            self.nonce_mac
                .clone()
                .chain_update(value)
                .finalize()
                .into_bytes()
                .into(),
        );
        let mut hex = Zeroizing::new([0u8; HEX_LEN]);
        hex::encode_to_slice(digest.as_ref(), hex.as_mut()).expect("64 hex digits");
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&hex[self.nonce_start..self.nonce_start + NONCE_LEN]);
        nonce
    }

    fn encrypt(&self, nonce: &Nonce, text: &mut [u8]) -> Tag {
        match &self.aead {
            Aead::Aes128(aead) => aead.encrypt_in_place_detached(nonce, b"", text),
            Aead::Aes256(aead) => aead.encrypt_in_place_detached(nonce, b"", text),
        }
        .expect("values are far below AES-GCM-SIV's length limit")
    }

    fn decrypt(&self, nonce: &Nonce, text: &mut [u8], tag: &Tag) -> Result<(), ()> {
        match &self.aead {
            Aead::Aes128(aead) => aead.decrypt_in_place_detached(nonce, b"", text, tag),
            Aead::Aes256(aead) => aead.decrypt_in_place_detached(nonce, b"", text, tag),
        }
        .map_err(|_| ())
    }
}

/// Whether `token` is written in the replaced service's format rather than ours: ours always
/// hold a `.`, standard base64 never does.
pub fn is_lambda_token(token: &str) -> bool {
    !token.contains('.')
}

/// Whether `token` has the shape of one of the replaced service's tokens (padded standard base64
/// of at least a nonce and a tag), whatever key made it: to tell a token of a key this service
/// lacks from a string that is no token at all.
pub fn has_lambda_shape(token: &str) -> bool {
    let mut buffer = Vec::new();
    STANDARD.decode_vec(token, &mut buffer).is_ok() && buffer.len() >= NONCE_LEN + TAG_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_JSON: &str = r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "encodedNonceKey": "AQIDBAUGBwg=", "nonceStrPos": 7, "nonceEndPos": 19, "other": 1}"#;

    fn cipher() -> LambdaCipher {
        LambdaCipher::new(&LambdaKey::from_secret_json(SECRET_JSON).expect("valid key"))
    }

    #[test]
    fn both_modes_round_trip_and_are_told_apart() {
        let cipher = cipher();
        let mut buffer = Vec::new();
        for value in ["", "WVWZZZ1JZXW000001", "ünïcødé ✓"] {
            for mode in [LambdaMode::Deterministic, LambdaMode::Randomized] {
                let token = cipher.seal(mode, value.as_bytes(), &mut buffer);
                assert!(is_lambda_token(&token));
                let opened = cipher.open(&token, &mut buffer);
                assert_eq!(opened, Ok((mode, value.to_owned())), "{mode:?} {value:?}");
            }
        }
    }

    #[test]
    fn deterministic_tokens_repeat_and_carry_hex_nonces() {
        let cipher = cipher();
        let mut buffer = Vec::new();
        let a = cipher.seal(LambdaMode::Deterministic, b"x", &mut buffer);
        let b = cipher.seal(LambdaMode::Deterministic, b"x", &mut buffer);
        assert_eq!(a, b);
        let raw = STANDARD.decode(&a).expect("base64");
        assert!(raw[..NONCE_LEN].iter().all(u8::is_ascii_hexdigit));
        assert_eq!(raw.len(), NONCE_LEN + 1 + TAG_LEN);
    }

    #[test]
    fn altered_short_and_foreign_tokens_are_invalid() {
        let cipher = cipher();
        let mut buffer = Vec::new();
        // 34 bytes: the token ends in padding.
        let token = cipher.seal(LambdaMode::Deterministic, b"values", &mut buffer);
        assert!(token.ends_with("=="));
        let mut raw = STANDARD.decode(&token).expect("base64");
        raw[NONCE_LEN] ^= 1;
        let altered = STANDARD.encode(&raw);
        let unpadded = token.trim_end_matches('=');
        for bad in [
            altered.as_str(),
            "",
            "AAAA",
            &STANDARD.encode([0u8; NONCE_LEN + TAG_LEN - 1]),
            &STANDARD.encode([0u8; NONCE_LEN + TAG_LEN]),
            "not base64!",
            unpadded,
        ] {
            assert_eq!(
                cipher.open(bad, &mut buffer),
                Err(ItemErrorCode::InvalidToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_keys_are_named_without_their_bytes() {
        let cases = [
            (
                r#"{"encodedSecretKey": "AAEC", "encodedNonceKey": "AQ==", "nonceStrPos": 0, "nonceEndPos": 12}"#,
                "encodedSecretKey",
            ),
            (
                r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODw==", "encodedNonceKey": "", "nonceStrPos": 0, "nonceEndPos": 12}"#,
                "encodedNonceKey",
            ),
            (
                r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODw==", "encodedNonceKey": "AQ==", "nonceStrPos": 60, "nonceEndPos": 72}"#,
                "nonceStrPos",
            ),
            (
                r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODw==", "encodedNonceKey": "AQ==", "nonceStrPos": 0, "nonceEndPos": 10}"#,
                "nonceEndPos",
            ),
            (
                r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODw=="}"#,
                "encodedNonceKey",
            ),
        ];
        for (json, field) in cases {
            let message = LambdaKey::from_secret_json(json)
                .expect_err("invalid")
                .to_string();
            assert!(message.contains(field), "{message}");
            assert!(!message.contains("AAEC"), "{message}");
        }
    }

    #[test]
    fn keys_survive_the_keyring_entry_and_hide_from_debug() {
        let key = LambdaKey::from_secret_json(SECRET_JSON).expect("valid");
        let mut text = Zeroizing::new(String::new());
        key.append_toml(&mut text);
        let table: std::collections::BTreeMap<String, LambdaKeyEntry> =
            toml::from_str(&text).expect("own format parses");
        let again = LambdaKey::from_entry(&table["seed_key"]).expect("own entry");
        assert!(key.same_as(&again));
        assert_eq!(format!("{key:?}"), "LambdaKey([REDACTED])");
    }

    #[test]
    fn a_keyring_with_either_spelling_of_the_table_reads_and_keeps_the_old_one_for_now() {
        let key = LambdaKey::from_secret_json(SECRET_JSON).expect("valid");
        let mut table = Zeroizing::new(String::new());
        key.append_toml(&mut table);
        let old = format!(
            "primary = 1\n[[keys]]\nversion = 1\nsecret = \"{}\"\n{}",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            table.as_str()
        );
        let new = old.replace("[seed_key]", "[lambda_key]");
        for (text, name) in [(&old, "[seed_key]"), (&new, "[lambda_key]")] {
            let keyring = crate::Keyring::from_toml(text, "keyring").expect(name);
            assert!(
                keyring.lambda_key().is_some_and(|k| k.same_as(&key)),
                "{name}"
            );
            // Written as a pseudonymd of the previous release reads it, until the next release.
            assert!(keyring.to_toml().contains("[seed_key]"), "{name}");
        }
    }
}
