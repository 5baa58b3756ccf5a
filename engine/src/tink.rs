//! Deterministic pseudonyms in Tink's format, for the domains configured so: what BigQuery's
//! `DETERMINISTIC_DECRYPT_STRING`, Kafka encryption tools and every Tink library read and
//! write with the domain's keyset (exported with `pseudonymd keygen --export-tink-keyset`).
//!
//! - token: standard base64, padded, of `0x01 ‖ key id (u32 big-endian) ‖ SIV (16) ‖
//!   ciphertext`: Tink's `DeterministicAead` with the `TINK` output prefix, which is AES-SIV
//!   (RFC 5297, a 64-byte key) with one associated-data string, here the domain's bytes;
//! - key id: the key version, so that a token names the version that opens it;
//! - key: its own per key version *and domain*, `HKDF-Expand(root, "pseudonym/1 tink aes-siv"
//!   ‖ 0x00 ‖ domain, 64)`, where `root` is the version's HKDF output for [`INFO_TINK_ROOT`]:
//!   a domain's exported keyset opens that domain's Tink tokens and nothing else (no other
//!   domain's, and no native token).
//!
//! Pinned by `engine/tests/data/golden-tink.json`, which PyPI's `tink` checks independently.

use aes::Aes256;
use base64_simd::STANDARD;
pub(crate) use base64_simd::STANDARD_NO_PAD;
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::buffers::Payloads;
use crate::siv::Siv;
use crate::texts::{Texts, TextsBuilder};
use pseudonym_client::wire::Domain;

/// HKDF `info` of a key version's Tink root, from which each domain's Tink key is expanded.
pub const INFO_TINK_ROOT: &[u8] = b"pseudonym/1 tink root";
/// The first part of the HKDF `info` of a domain's Tink key (then a zero byte, the domain).
pub const INFO_TINK: &[u8] = b"pseudonym/1 tink aes-siv";
/// Tink's type URL of an AES-SIV key.
pub const TYPE_URL: &str = "type.googleapis.com/google.crypto.tink.AesSivKey";
/// The first byte of a token with Tink's `TINK` output prefix.
const TINK_PREFIX: u8 = 0x01;
/// The output prefix: its byte and the key id.
pub const PREFIX_LEN: usize = 5;
/// The output prefix and the SIV: the bytes of a token before its ciphertext.
pub const HEAD_LEN: usize = PREFIX_LEN + 16;
const KEY_LEN: usize = 64;

/// A key version's root of Tink keys (32 bytes, zeroized on drop).
pub(crate) struct TinkRoot(SecretBox<[u8; 32]>);

impl TinkRoot {
    /// The root of the version whose HKDF is `hkdf`.
    pub(crate) fn derive(hkdf: &Hkdf<Sha256>) -> Self {
        let mut root = Box::new([0u8; 32]);
        hkdf.expand(INFO_TINK_ROOT, root.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        TinkRoot(SecretBox::new(root))
    }

    /// The AES-SIV key of `domain`'s Tink tokens.
    pub(crate) fn key(&self, domain: Domain<'_>) -> Zeroizing<[u8; KEY_LEN]> {
        let hkdf = Hkdf::<Sha256>::from_prk(self.0.expose_secret())
            .expect("a 32-byte root is a valid HKDF-SHA256 PRK");
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hkdf.expand_multi_info(&[INFO_TINK, &[0], domain.as_str().as_bytes()], key.as_mut())
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        key
    }

    /// [`TinkRoot::key`], ready to seal and open.
    pub(crate) fn siv(&self, domain: Domain<'_>) -> Siv<Aes256> {
        Siv::new(self.key(domain).as_ref()).expect("a 512-bit AES-SIV key")
    }
}

/// The output prefix of key version `version`'s tokens.
pub(crate) fn prefix(version: u32) -> [u8; PREFIX_LEN] {
    let mut prefix = [TINK_PREFIX; PREFIX_LEN];
    prefix[1..].copy_from_slice(&version.to_be_bytes());
    prefix
}

/// Whether `token` may be a Tink token: a multiple of four characters, long enough for the head,
/// without a `.` (which every native token has). The replaced service's tokens have this shape
/// too. (The service bounds a token's length before it gets here.)
pub(crate) fn has_tink_shape(token: &str) -> bool {
    token.len() >= 4 * HEAD_LEN.div_ceil(3) && token.len().is_multiple_of(4) && !token.contains('.')
}

/// The text of `token` without its padding, if it is padded as standard base64 must be (the
/// one spelling accepted); decoded with [`crate::token::decode_each_in`] and
/// [`STANDARD_NO_PAD`], many at a time.
pub(crate) fn unpadded(token: &str) -> Option<&[u8]> {
    let text = token.trim_end_matches('=');
    let padding = token.len() - text.len();
    (token.len().is_multiple_of(4) && padding == (4 - text.len() % 4) % 4)
        .then_some(text.as_bytes())
}

/// The key version a decoded token's key id names, if it has a Tink head.
pub(crate) fn key_version(payload: &[u8]) -> Option<u32> {
    match payload {
        [TINK_PREFIX, a, b, c, d, ..] if payload.len() >= HEAD_LEN => {
            Some(u32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

/// One Tink token per value under key version `version` and `siv`, `domain`'s key of it:
/// same order, `None` stays `None`.
pub(crate) fn seal(
    siv: &Siv<Aes256>,
    version: u32,
    domain: Domain<'_>,
    values: &[Option<&[u8]>],
) -> Texts {
    let mut batch = Payloads::with_prefix(HEAD_LEN, values.iter().flatten());
    let state = siv.absorb(&[domain.as_str().as_bytes()]);
    let tags = siv.seal(|_| state, &mut batch.bodies_mut());
    let prefix = prefix(version);
    for (index, tag) in tags.iter().enumerate() {
        let head = batch.prefix_mut(index);
        head[..PREFIX_LEN].copy_from_slice(&prefix);
        head[PREFIX_LEN..].copy_from_slice(tag);
    }
    let mut tokens = TextsBuilder::with_capacity(values.len(), encoded_len(24));
    let mut payloads = batch.ranges.iter();
    for value in values {
        match value {
            Some(_) => {
                let payload = payloads.next().expect("a payload per value");
                tokens.push_with(|out| encode_append(&batch.buffer[payload.clone()], out));
            }
            None => tokens.push_none(),
        }
    }
    tokens.finish_tokens()
}

/// Appends the text of `payload` to `out`: padded standard base64.
pub(crate) fn encode_append(payload: &[u8], out: &mut Vec<u8>) {
    STANDARD.encode_append(payload, out);
}

/// The characters of a token for a value of `len` bytes.
pub(crate) fn encoded_len(len: usize) -> usize {
    (HEAD_LEN + len).div_ceil(3) * 4
}

/// A domain's Tink keyset: one AES-SIV key per key version, its key id the version. Key
/// material is zeroized on drop and never shown by `Debug`.
pub struct Keyset {
    primary: u32,
    keys: Vec<(u32, Zeroizing<[u8; KEY_LEN]>)>,
}

impl std::fmt::Debug for Keyset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyset")
            .field("primary", &self.primary)
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl Keyset {
    pub(crate) fn new(primary: u32, keys: Vec<(u32, Zeroizing<[u8; KEY_LEN]>)>) -> Self {
        Keyset { primary, keys }
    }

    /// The key ids, which are the key versions, in ascending order.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|(id, _)| *id).collect()
    }

    /// The keyset as Tink's JSON keyset format (what `tinkey` and
    /// `tink.json_proto_keyset_format` read): secret.
    pub fn to_json(&self) -> SecretString {
        let mut keys = Vec::with_capacity(self.keys.len());
        for (id, key) in &self.keys {
            let mut proto = Zeroizing::new(Vec::with_capacity(2 + KEY_LEN));
            aes_siv_key_proto(key, &mut proto);
            let value = Zeroizing::new(STANDARD.encode_to_string(proto.as_slice()));
            keys.push(Zeroizing::new(format!(
                r#"{{"keyData":{{"typeUrl":"{TYPE_URL}","value":"{}","keyMaterialType":"SYMMETRIC"}},"status":"ENABLED","keyId":{id},"outputPrefixType":"TINK"}}"#,
                value.as_str()
            )));
        }
        let mut json = Zeroizing::new(String::with_capacity(
            keys.iter().map(|k| k.len() + 1).sum::<usize>() + 64,
        ));
        json.push_str(&format!(r#"{{"primaryKeyId":{},"key":["#, self.primary));
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(key);
        }
        json.push_str("]}\n");
        // A copy of exactly its length: the box it becomes is not reallocated (and `json` is
        // wiped when dropped).
        SecretString::from(String::from(json.as_str()))
    }

    /// The keyset as Tink's binary format (the serialized `google.crypto.tink.Keyset`), what
    /// a KMS wraps into an encrypted keyset: secret.
    pub fn to_binary(&self) -> SecretBox<Vec<u8>> {
        let mut out = Vec::with_capacity(self.keys.len() * 160 + 8);
        field_varint(&mut out, 1, u64::from(self.primary));
        for (id, key) in &self.keys {
            let mut aes_siv_key = Zeroizing::new(Vec::with_capacity(2 + KEY_LEN));
            aes_siv_key_proto(key, &mut aes_siv_key);
            let mut key_data = Zeroizing::new(Vec::with_capacity(140));
            field_bytes(&mut key_data, 1, TYPE_URL.as_bytes());
            field_bytes(&mut key_data, 2, &aes_siv_key);
            field_varint(&mut key_data, 3, KEY_MATERIAL_SYMMETRIC);
            let mut entry = Zeroizing::new(Vec::with_capacity(160));
            field_bytes(&mut entry, 1, &key_data);
            field_varint(&mut entry, 2, STATUS_ENABLED);
            field_varint(&mut entry, 3, u64::from(*id));
            field_varint(&mut entry, 4, OUTPUT_PREFIX_TINK);
            field_bytes(&mut out, 2, &entry);
        }
        SecretBox::new(Box::new(out))
    }

    /// Tink's JSON encrypted keyset: `encrypted` (the binary keyset wrapped by a KMS, as that
    /// KMS's Tink AEAD writes it) and the keyset's non-secret description.
    pub fn to_encrypted_json(&self, encrypted: &[u8]) -> String {
        let info: Vec<String> = self
            .key_ids()
            .iter()
            .map(|id| {
                format!(
                    r#"{{"typeUrl":"{TYPE_URL}","status":"ENABLED","keyId":{id},"outputPrefixType":"TINK"}}"#
                )
            })
            .collect();
        format!(
            r#"{{"encryptedKeyset":"{}","keysetInfo":{{"primaryKeyId":{},"keyInfo":[{}]}}}}"#,
            STANDARD.encode_to_string(encrypted),
            self.primary,
            info.join(","),
        ) + "\n"
    }
}

// Field values of Tink's protos (tink.proto): KeyStatusType.ENABLED,
// OutputPrefixType.TINK, KeyData.KeyMaterialType.SYMMETRIC.
const STATUS_ENABLED: u64 = 1;
const OUTPUT_PREFIX_TINK: u64 = 1;
const KEY_MATERIAL_SYMMETRIC: u64 = 2;

/// `google.crypto.tink.AesSivKey { version: 0, key_value: key }`, serialized: the version, 0,
/// is a default and is not written.
fn aes_siv_key_proto(key: &[u8; KEY_LEN], out: &mut Vec<u8>) {
    field_bytes(out, 2, key);
}

/// A protobuf varint field (wire type 0).
fn field_varint(out: &mut Vec<u8>, field: u64, value: u64) {
    varint(out, field << 3);
    varint(out, value);
}

/// A protobuf length-delimited field (wire type 2).
fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let mut out = Vec::new();
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX)] {
            varint(&mut out, value);
        }
        assert_eq!(
            out,
            [0, 1, 127, 0x80, 1, 0xac, 2, 0xff, 0xff, 0xff, 0xff, 0x0f]
        );
    }

    #[test]
    fn prefixes_name_the_version_big_endian() {
        assert_eq!(prefix(0x0102_0304), [1, 1, 2, 3, 4]);
    }

    #[test]
    fn only_canonical_padding_is_taken_off() {
        for (token, text) in [
            ("AQAAAAcJ", Some("AQAAAAcJ")),
            ("AQAAAAc=", Some("AQAAAAc")),
            ("AQAAAA==", Some("AQAAAA")),
            ("AQAAAAc", None),
            ("AQAAAA=", None),
            ("AQAAA===", Some("AQAAA")),
            ("AQAAAAc==", None),
        ] {
            assert_eq!(unpadded(token), text.map(str::as_bytes), "{token}");
        }
        assert!(has_tink_shape(&"A".repeat(encoded_len(0))));
        assert!(!has_tink_shape(&"A".repeat(encoded_len(0) - 4)));
    }

    #[test]
    fn a_tink_head_names_the_key_version() {
        let mut payload = prefix(7).to_vec();
        payload.extend_from_slice(&[9; 16]);
        assert_eq!(key_version(&payload), Some(7));
        assert_eq!(key_version(&payload[..HEAD_LEN - 1]), None);
        payload[0] = 0;
        assert_eq!(key_version(&payload), None);
    }

    #[test]
    fn keysets_hide_their_keys_from_debug() {
        let keyset = Keyset::new(
            2,
            vec![(1, Zeroizing::new([7; 64])), (2, Zeroizing::new([8; 64]))],
        );
        let shown = format!("{keyset:?}");
        assert!(
            shown.contains("[1, 2]") && !shown.contains("7, 7"),
            "{shown}"
        );
    }
}
