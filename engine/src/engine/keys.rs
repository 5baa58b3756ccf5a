//! A key version's subkeys: HKDF-SHA256 of its secret (salt [`HKDF_SALT`]), one `info` label
//! per purpose (the table in [`crate::engine`]), so no key is ever used for two; derived once,
//! when the engine is built.

use aes::Aes256;
use hkdf::Hkdf;
use secrecy::SecretBox;
use sha2::Sha256;

use crate::ff1::Ff1;
use crate::keyring::SecretKey;
use crate::siv::Siv;
use crate::tink::TinkRoot;

/// HKDF salt of the first (and so far only) token format.
pub const HKDF_SALT: &[u8] = b"pseudonym/1";
/// HKDF `info` of the deterministic mode's AES-SIV key.
pub const INFO_DETERMINISTIC: &[u8] = b"pseudonym/1 deterministic aes-siv";
/// HKDF `info` of the randomized mode's AES-SIV key.
pub const INFO_RANDOMIZED: &[u8] = b"pseudonym/1 randomized aes-siv";
/// HKDF `info` of the hash mode's HMAC key.
pub const INFO_HASH: &[u8] = b"pseudonym/1 hash hmac-sha256";
/// HKDF `info` of the format-preserving mode's FF1 (AES-256) key.
pub const INFO_FORMAT_PRESERVING: &[u8] = b"pseudonym/1 format-preserving ff1-aes256";
/// HKDF `info` of a key version's fingerprint: 8 bytes that name the secret without revealing
/// it (no other key is derived from them), so replicas can show they hold the same one.
pub const INFO_FINGERPRINT: &[u8] = b"pseudonym/1 key fingerprint";

const SIV_KEY_LEN: usize = 64;
const HASH_KEY_LEN: usize = 32;

pub(super) struct VersionKeys {
    pub(super) deterministic: SivKey,
    pub(super) randomized: SivKey,
    /// The HMAC key. The `hmac` crate's keyed state cannot be zeroized, so it is built per
    /// batch from these bytes and lives only as long as the batch (never re-keyed per value).
    pub(super) hash: SecretBox<[u8; HASH_KEY_LEN]>,
    /// The FF1 key, its AES key schedule built once.
    pub(super) format_preserving: Ff1,
    /// The root of each domain's Tink key.
    pub(super) tink: TinkRoot,
    /// The version's fingerprint, in hex (see [`INFO_FINGERPRINT`]).
    pub(super) fingerprint: String,
}

/// An AES-SIV key with its key schedules and CMAC subkeys, built once per key version and
/// shared by every batch (and thread).
pub(super) struct SivKey(pub(super) Siv<Aes256>);

impl SivKey {
    fn derive(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Self {
        let mut key = zeroize::Zeroizing::new([0u8; SIV_KEY_LEN]);
        hkdf.expand(info, key.as_mut())
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        SivKey(Siv::new(key.as_ref()).expect("a 512-bit AES-SIV key"))
    }
}

impl VersionKeys {
    /// Every subkey of the version whose secret is `key`.
    pub(super) fn derive(key: &SecretKey) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), key.expose());
        let mut hash_key = Box::new([0u8; HASH_KEY_LEN]);
        hkdf.expand(INFO_HASH, hash_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut ff1_key = zeroize::Zeroizing::new([0u8; 32]);
        hkdf.expand(INFO_FORMAT_PRESERVING, ff1_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut fingerprint = [0u8; 8];
        hkdf.expand(INFO_FINGERPRINT, &mut fingerprint)
            .expect("8 bytes is a valid HKDF-SHA256 output length");
        VersionKeys {
            deterministic: SivKey::derive(&hkdf, INFO_DETERMINISTIC),
            randomized: SivKey::derive(&hkdf, INFO_RANDOMIZED),
            hash: SecretBox::new(hash_key),
            format_preserving: Ff1::new(&ff1_key),
            tink: TinkRoot::derive(&hkdf),
            fingerprint: hex::encode(fingerprint),
        }
    }
}
