//! The keyed crypto: batches of values to tokens and back. Knows nothing of HTTP.
//!
//! Per key version, three subkeys are derived with HKDF-SHA256 (salt [`HKDF_SALT`], one `info`
//! label per mode), so no key is ever used for two purposes:
//!
//! | mode | subkey | token payload |
//! |---|---|---|
//! | deterministic | 64 bytes, `pseudonym/1 deterministic aes-siv` | AES-SIV(ad = \[domain\]) as `tag ‖ ciphertext` |
//! | randomized | 64 bytes, `pseudonym/1 randomized aes-siv` | `nonce ‖ tag ‖ ciphertext`, AES-SIV(ad = \[domain, nonce\]) |
//! | hash | 32 bytes, `pseudonym/1 hash hmac-sha256` | HMAC-SHA256(len(domain) as u16 BE ‖ domain ‖ value) |
//! | format-preserving | 32 bytes, `pseudonym/1 format-preserving ff1-aes256` | no token: FF1 of the value's characters ([`crate::preserving`]) |
//! | deterministic, in a Tink domain | 32 bytes, `pseudonym/1 tink root`, then one key per domain | Tink's format ([`crate::tink`]) |
//!
//! Changing any of this changes every pseudonym: it needs a new token format version.
//!
//! Tink tokens open in every domain (their key is the domain's); the domains named with
//! [`Engine::with_tink_domains`] also make their deterministic pseudonyms so.
//!
//! Tokens of the replaced service ([`crate::seed`]) open too, with its imported key, in the one
//! domain they belong to (see [`Engine::with_compat_domain`]); rewrapping turns them into ours.

use std::collections::BTreeMap;
use std::ops::Range;

use aes::Aes256;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use pseudonym_client::wire::{ItemError, ReidentifyResponse, RewrapResponse};
use pseudonym_client::{ItemErrorCode, Mode};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::ff1::Ff1;
use crate::keyring::{Keyring, SecretKey};
use crate::seed::{self, SeedCipher, SeedMode};
use crate::short_copy;
use crate::siv::{Block, Siv};
use crate::texts::{Texts, TextsBuilder};
use crate::tink::{self, TinkRoot};
use crate::token;
use pseudonym_client::wire::Domain;

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

const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 16;
const SIV_KEY_LEN: usize = 64;
const HASH_KEY_LEN: usize = 32;

/// Turns values into tokens and tokens back into values with the keys of one keyring.
///
/// Subkeys are derived once, when the engine is built. Every batch function keeps the order of
/// its input and leaves `None` as `None`.
pub struct Engine {
    primary: u32,
    versions: BTreeMap<u32, VersionKeys>,
    /// The replaced service's key, if the keyring holds it.
    seed: Option<SeedCipher>,
    /// The domain the replaced service's tokens belong to; none: they open in no domain.
    compat_domain: Option<String>,
    /// The domains whose deterministic pseudonyms are Tink tokens, with their key of each
    /// version, ready (another domain's are derived per batch).
    tink_domains: BTreeMap<String, BTreeMap<u32, Siv<Aes256>>>,
}

struct VersionKeys {
    deterministic: SivKey,
    randomized: SivKey,
    /// The HMAC key. The `hmac` crate's keyed state cannot be zeroized, so it is built per
    /// batch from these bytes and lives only as long as the batch (never re-keyed per value).
    hash: SecretBox<[u8; HASH_KEY_LEN]>,
    /// The FF1 key, its AES key schedule built once.
    format_preserving: Ff1,
    /// The root of each domain's Tink key.
    tink: TinkRoot,
    /// The version's fingerprint, in hex (see [`INFO_FINGERPRINT`]).
    fingerprint: String,
}

/// An AES-SIV key with its key schedules and CMAC subkeys, built once per key version and
/// shared by every batch (and thread).
struct SivKey(Siv<Aes256>);

impl SivKey {
    fn derive(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Self {
        let mut key = zeroize::Zeroizing::new([0u8; SIV_KEY_LEN]);
        hkdf.expand(info, key.as_mut())
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        SivKey(Siv::new(key.as_ref()).expect("a 512-bit AES-SIV key"))
    }
}

impl VersionKeys {
    fn derive(key: &SecretKey) -> Self {
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

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("primary", &self.primary)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .field("seed_key", &self.seed.is_some())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Derives the subkeys of every version in `keyring`.
    pub fn new(keyring: &Keyring) -> Self {
        Engine {
            primary: keyring.primary(),
            versions: keyring
                .keys()
                .map(|(version, key)| (version, VersionKeys::derive(key)))
                .collect(),
            seed: keyring.seed_key().map(SeedCipher::new),
            compat_domain: None,
            tink_domains: BTreeMap::new(),
        }
    }

    /// Makes the deterministic pseudonyms of `domains` Tink tokens ([`crate::tink`]), when
    /// pseudonymizing and rewrapping. (Tink tokens open in every domain.)
    pub fn with_tink_domains<'d>(mut self, domains: impl IntoIterator<Item = Domain<'d>>) -> Self {
        self.tink_domains = domains
            .into_iter()
            .map(|domain| {
                let keys = self
                    .versions
                    .iter()
                    .map(|(version, keys)| (*version, keys.tink.siv(domain)))
                    .collect();
                (domain.as_str().to_owned(), keys)
            })
            .collect();
        self
    }

    /// The domains whose deterministic pseudonyms are Tink tokens, in order.
    pub fn tink_domains(&self) -> Vec<String> {
        self.tink_domains.keys().cloned().collect()
    }

    /// The Tink keyset of `domain`'s Tink tokens: every key version's key for it, the primary
    /// version's primary. Whoever holds it opens the domain's Tink tokens without the service.
    pub fn tink_keyset(&self, domain: Domain<'_>) -> tink::Keyset {
        let keys = self
            .versions
            .iter()
            .map(|(version, keys)| (*version, keys.tink.key(domain)))
            .collect();
        tink::Keyset::new(self.primary, keys)
    }

    /// Opens the replaced service's tokens in `domain` (the service's `compat_domain`), and in
    /// no other: they carry no domain of their own.
    pub fn with_compat_domain(mut self, domain: Domain<'_>) -> Self {
        self.compat_domain = Some(domain.as_str().to_owned());
        self
    }

    /// One token per value in the replaced service's format, byte for byte what it made (for
    /// `compat_tokens = "seed"`): same order, `None` stays `None`. `None` as a whole when the
    /// keyring holds no key of that service.
    pub fn pseudonymize_seed<S: AsRef<str>>(
        &self,
        mode: SeedMode,
        values: &[Option<S>],
    ) -> Option<Vec<Option<String>>> {
        let cipher = self.seed.as_ref()?;
        let mut buffer = Vec::new();
        Some(
            values
                .iter()
                .map(|value| {
                    let value = value.as_ref()?;
                    Some(cipher.seal(mode, value.as_ref().as_bytes(), &mut buffer))
                })
                .collect(),
        )
    }

    /// The key version new pseudonyms are made with.
    pub fn primary_version(&self) -> u32 {
        self.primary
    }

    /// The FF1 key of `version`, if the keyring holds it.
    pub(crate) fn ff1_key(&self, version: u32) -> Option<&Ff1> {
        self.versions
            .get(&version)
            .map(|keys| &keys.format_preserving)
    }

    /// Every key version whose tokens open here, in ascending order.
    pub fn versions(&self) -> Vec<u32> {
        self.versions.keys().copied().collect()
    }

    /// Every key version with its fingerprint (16 hex digits): equal fingerprints, same secret.
    /// Not secret: derived with a label of its own, from which no other key is derived.
    pub fn fingerprints(&self) -> BTreeMap<u32, String> {
        self.versions
            .iter()
            .map(|(version, keys)| (*version, keys.fingerprint.clone()))
            .collect()
    }

    /// Whether the replaced service's tokens open here (its key is in the keyring).
    pub fn has_seed_key(&self) -> bool {
        self.seed.is_some()
    }

    /// One token per value under the primary key version: same order, `None` stays `None`.
    ///
    /// # Panics
    /// With `format-preserving`, which needs a domain's format:
    /// [`Engine::pseudonymize_preserving`].
    pub fn pseudonymize<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        mode: Mode,
        values: &[Option<S>],
    ) -> Vec<Option<String>> {
        self.pseudonymize_tokens(domain, mode, values)
            .into_strings()
    }

    /// [`Engine::pseudonymize`], the tokens in one buffer (what the service answers from).
    pub fn pseudonymize_tokens<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        mode: Mode,
        values: &[Option<S>],
    ) -> Texts {
        let values: Vec<Option<&[u8]>> = values
            .iter()
            .map(|value| value.as_ref().map(|v| v.as_ref().as_bytes()))
            .collect();
        self.seal(mode, domain, &values)
    }

    /// The value behind each token of `domain`: same order, `None` stays `None`. A token that
    /// fails is `None` in `values` and listed in `errors`; the others still succeed.
    pub fn reidentify<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        tokens: &[Option<S>],
    ) -> ReidentifyResponse {
        let ReidentifyResponse { values, errors } = self.reidentify_texts(domain, tokens);
        ReidentifyResponse {
            values: values.into_strings(),
            errors,
        }
    }

    /// [`Engine::reidentify`], the values in one buffer (what the service answers from).
    pub fn reidentify_texts<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        tokens: &[Option<S>],
    ) -> ReidentifyResponse<Texts> {
        let (buffer, opened) = self.open(domain, tokens);
        let mut errors = Vec::new();
        let mut values = TextsBuilder::with_capacity(tokens.len(), 24);
        for (index, item) in opened.iter().enumerate() {
            if let Opened::Ours(_, range) = item {
                values.push_with(|out| {
                    let window = &buffer[range.start..];
                    short_copy::extend_from_window::<{ short_copy::VALUE_WINDOW }>(
                        out,
                        window,
                        range.len(),
                    )
                });
                continue;
            }
            match item.value(&buffer) {
                Ok(Some((_, value))) => values.push_with(|out| out.extend_from_slice(value)),
                Ok(None) => values.push_none(),
                Err(code) => {
                    errors.push(ItemError { index, code });
                    values.push_none();
                }
            }
        }
        let (values, not_utf8) = values.finish();
        if !not_utf8.is_empty() {
            errors.extend(not_utf8.into_iter().map(|index| ItemError {
                index,
                code: ItemErrorCode::InvalidToken,
            }));
            errors.sort_by_key(|error| error.index);
        }
        ReidentifyResponse { values, errors }
    }

    /// Each token of `domain` made again under the primary key version, in the same mode, without
    /// the plaintext ever leaving the engine: same order, `None` stays `None`. A token that cannot
    /// be opened (or a `hash` one, which cannot be opened at all) is `None` and listed in
    /// `errors`. Rewrapping a deterministic token gives exactly what pseudonymizing its value
    /// under the primary version gives.
    pub fn rewrap<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        tokens: &[Option<S>],
    ) -> RewrapResponse {
        let RewrapResponse { pseudonyms, errors } = self.rewrap_texts(domain, tokens);
        RewrapResponse {
            pseudonyms: pseudonyms.into_strings(),
            errors,
        }
    }

    /// [`Engine::rewrap`], the pseudonyms in one buffer (what the service answers from).
    pub fn rewrap_texts<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        tokens: &[Option<S>],
    ) -> RewrapResponse<Texts> {
        let (buffer, opened) = self.open(domain, tokens);
        let mut errors = Vec::new();
        let values: Vec<OpenedValue<'_>> = opened
            .iter()
            .map(|item| {
                // What would not re-identify does not rewrap either.
                item.value(&buffer).and_then(|value| match value {
                    Some((_, bytes)) if std::str::from_utf8(bytes).is_err() => {
                        Err(ItemErrorCode::InvalidToken)
                    }
                    value => Ok(value),
                })
            })
            .collect();
        // Each mode's values sealed together, the others `None` there.
        let [deterministic, randomized] = [Mode::Deterministic, Mode::Randomized].map(|mode| {
            let of_mode: Vec<Option<&[u8]>> = values
                .iter()
                .map(|value| match value {
                    Ok(Some((m, bytes))) if *m == mode => Some(*bytes),
                    _ => None,
                })
                .collect();
            self.seal(mode, domain, &of_mode)
        });
        let mut pseudonyms = Texts::default();
        for (index, value) in values.iter().enumerate() {
            if let Err(code) = value {
                errors.push(ItemError { index, code: *code });
            }
            pseudonyms.push(deterministic.get(index).or(randomized.get(index)));
        }
        RewrapResponse { pseudonyms, errors }
    }

    fn primary_keys(&self) -> &VersionKeys {
        self.versions
            .get(&self.primary)
            .expect("the keyring checked that the primary version is present")
    }

    /// Tokens of `mode` under the primary version, one per value, `None` kept.
    fn seal(&self, mode: Mode, domain: Domain<'_>, values: &[Option<&[u8]>]) -> Texts {
        let keys = self.primary_keys();
        if let (Mode::Deterministic, Some(tink_keys)) =
            (mode, self.tink_domains.get(domain.as_str()))
        {
            let siv = &tink_keys[&self.primary];
            return tink::seal(siv, self.primary, domain, values);
        }
        let header = token::header(mode, self.primary);
        let siv = match mode {
            Mode::Deterministic => &keys.deterministic.0,
            Mode::Randomized => &keys.randomized.0,
            Mode::Hash => return seal_hash(keys, &header, domain, values),
            Mode::FormatPreserving => unreachable!("the header above refused it"),
        };
        // One buffer holds every payload: `[nonce ‖] tag ‖ value`, sealed in place.
        let nonce_len = if mode == Mode::Randomized {
            NONCE_LEN
        } else {
            0
        };
        let mut batch = Payloads::with_prefix(nonce_len + TAG_LEN, values.iter().flatten());
        let state = siv.absorb(&[domain.as_str().as_bytes()]);
        let states = match mode {
            Mode::Randomized => {
                let mut nonces: Vec<Block> = vec![[0; NONCE_LEN]; batch.len()];
                rand::rng().fill_bytes(nonces.as_flattened_mut());
                for (index, nonce) in nonces.iter().enumerate() {
                    batch.prefix_mut(index)[..NONCE_LEN].copy_from_slice(nonce);
                }
                siv.absorb_each(&state, &nonces)
            }
            _ => Vec::new(),
        };
        let randomized = mode == Mode::Randomized;
        let state_of = |index: usize| if randomized { states[index] } else { state };
        let tags = siv.seal(state_of, &mut batch.bodies_mut());
        for (index, tag) in tags.iter().enumerate() {
            batch.prefix_mut(index)[nonce_len..][..TAG_LEN].copy_from_slice(tag);
        }
        let token_len = token::encoded_len(header.len(), nonce_len + TAG_LEN + 24);
        let mut tokens = TextsBuilder::with_capacity(values.len(), token_len);
        let mut head = [0; 16];
        head[..header.len()].copy_from_slice(header.as_bytes());
        let mut values = values.iter();
        token::encode_each(&batch.buffer, &batch.ranges, |text, len| {
            // The `None`s before this payload's value, and the value.
            for _ in values.by_ref().take_while(|value| value.is_none()) {
                tokens.push_none();
            }
            tokens.push_with(|out| {
                short_copy::extend_from_window::<16>(out, &head, header.len());
                short_copy::extend_from_window::<{ short_copy::TEXT_WINDOW }>(out, text, len);
            });
        });
        values.for_each(|_| tokens.push_none());
        tokens_of(tokens)
    }

    /// Each token opened, in place: the buffer the values of our tokens were decrypted in (with
    /// [`short_copy::VALUE_WINDOW`] zeros after the last), and what each token gave.
    fn open<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        tokens: &[Option<S>],
    ) -> (Vec<u8>, Vec<Opened>) {
        let mut answers: Vec<Opened> = tokens.iter().map(|_| Opened::Null).collect();
        // The tokens with a header of ours, and the texts of their payloads, decoded together
        // into one buffer.
        let mut headed = Vec::with_capacity(tokens.len());
        let mut texts = Vec::with_capacity(tokens.len());
        let mut tink_shaped = Vec::new();
        for (index, token) in tokens.iter().enumerate() {
            let Some(token) = token.as_ref().map(AsRef::as_ref) else {
                continue;
            };
            match token::split(token) {
                Ok((mode, version, text)) => {
                    headed.push((index, token, mode, version));
                    texts.push(text);
                }
                Err(token::Malformed) if tink::has_tink_shape(token) => {
                    tink_shaped.push((index, token));
                }
                Err(token::Malformed) => {
                    answers[index] = self.not_ours(domain, token, ItemErrorCode::InvalidToken);
                }
            }
        }
        let mut buffer = Vec::new();
        let decoded = token::decode_each(&texts, &mut buffer);
        let mut payloads = vec![0..0; tokens.len()];
        // Tink tokens after ours in the same buffer, decoded together too, grouped by the
        // version their key id names.
        let mut tink_texts = Vec::with_capacity(tink_shaped.len());
        tink_shaped.retain(|&(index, token)| match tink::unpadded(token) {
            Some(text) => {
                tink_texts.push(text);
                true
            }
            None => {
                answers[index] = self.not_ours(domain, token, ItemErrorCode::InvalidToken);
                false
            }
        });
        let tink_decoded = token::decode_each_in(&tink::STANDARD_NO_PAD, &tink_texts, &mut buffer);
        let mut tink_groups: Vec<(u32, Vec<usize>)> = Vec::new();
        for (&(index, token), payload) in tink_shaped.iter().zip(tink_decoded) {
            let version = payload.ok().and_then(|payload| {
                tink::key_version(&buffer[payload.clone()]).map(|version| (version, payload))
            });
            match version {
                Some((version, payload)) if self.versions.contains_key(&version) => {
                    payloads[index] = payload;
                    match tink_groups.iter_mut().find(|(v, _)| *v == version) {
                        Some((_, indices)) => indices.push(index),
                        None => tink_groups.push((version, vec![index])),
                    }
                }
                Some(_) => {
                    answers[index] = self.not_tink(domain, token, ItemErrorCode::UnknownKeyVersion);
                }
                None => answers[index] = self.not_ours(domain, token, ItemErrorCode::InvalidToken),
            }
        }
        // So that a value at the end is copied in line too (see `short_copy`), in the room
        // `decode_each` left for it: the buffer never grows, copying the values, after they
        // are decrypted.
        buffer.extend_from_slice(&[0; short_copy::VALUE_WINDOW]);
        // Tokens of ours, grouped by the key that opens them: (version, randomized) and the
        // indices (a batch has one or a few keys).
        let mut groups: Vec<((u32, bool), Vec<usize>)> = Vec::new();
        for ((index, token, mode, version), payload) in headed.into_iter().zip(decoded) {
            let key = payload
                .map_err(|token::Malformed| ItemErrorCode::InvalidToken)
                .and_then(|payload| {
                    self.key_of(mode, version, payload.len())
                        .map(|key| (key, payload))
                });
            match key {
                Ok((key, payload)) => {
                    payloads[index] = payload;
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, indices)) => indices.push(index),
                        None => groups.push((key, vec![index])),
                    }
                }
                Err(code) => answers[index] = self.not_ours(domain, token, code),
            }
        }
        for ((version, randomized), indices) in groups {
            let keys = &self.versions[&version];
            let (siv, mode, nonce_len) = if randomized {
                (&keys.randomized.0, Mode::Randomized, NONCE_LEN)
            } else {
                (&keys.deterministic.0, Mode::Deterministic, 0)
            };
            let state = siv.absorb(&[domain.as_str().as_bytes()]);
            let field = |index: usize, at: usize| -> Block {
                let start = payloads[index].start + at;
                buffer[start..start + 16]
                    .try_into()
                    .expect("key_of checked the length")
            };
            let tags: Vec<Block> = indices.iter().map(|&i| field(i, nonce_len)).collect();
            let states = if randomized {
                let nonces: Vec<Block> = indices.iter().map(|&i| field(i, 0)).collect();
                siv.absorb_each(&state, &nonces)
            } else {
                Vec::new()
            };
            let state_of = |lane: usize| if randomized { states[lane] } else { state };
            let body_of = |index: usize| {
                let payload = &payloads[index];
                payload.start + nonce_len + TAG_LEN..payload.end
            };
            let mut bodies = disjoint_mut(&mut buffer, indices.iter().map(|&i| body_of(i)));
            let authentic = siv.open(state_of, &tags, &mut bodies);
            for (index, authentic) in indices.into_iter().zip(authentic) {
                answers[index] = match authentic {
                    true => Opened::Ours(mode, body_of(index)),
                    false => Opened::Failed(ItemErrorCode::InvalidToken),
                };
            }
        }
        for (version, indices) in tink_groups {
            let derived;
            let ready = self.tink_domains.get(domain.as_str());
            let siv = match ready.and_then(|keys| keys.get(&version)) {
                Some(siv) => siv,
                None => {
                    derived = self.versions[&version].tink.siv(domain);
                    &derived
                }
            };
            let state = siv.absorb(&[domain.as_str().as_bytes()]);
            let tags: Vec<Block> = indices
                .iter()
                .map(|&i| {
                    buffer[payloads[i].start + tink::PREFIX_LEN..][..16]
                        .try_into()
                        .expect("tink::key_version checked the length")
                })
                .collect();
            let body_of =
                |index: usize| payloads[index].start + tink::HEAD_LEN..payloads[index].end;
            let mut bodies = disjoint_mut(&mut buffer, indices.iter().map(|&i| body_of(i)));
            let authentic = siv.open(|_| state, &tags, &mut bodies);
            for (index, authentic) in indices.into_iter().zip(authentic) {
                answers[index] = match authentic {
                    true => Opened::Ours(Mode::Deterministic, body_of(index)),
                    false => {
                        let token = tokens[index].as_ref().map_or("", AsRef::as_ref);
                        self.not_tink(domain, token, ItemErrorCode::InvalidToken)
                    }
                };
            }
        }
        (buffer, answers)
    }

    /// What a Tink-shaped token that does not open as one, for `code`, is: maybe one of the
    /// replaced service's, whose random nonce can start like a Tink token; else it failed.
    fn not_tink(&self, domain: Domain<'_>, token: &str, code: ItemErrorCode) -> Opened {
        match self.open_seed(domain, token) {
            Ok((mode, value)) => Opened::Seed(mode, value),
            Err(_) => Opened::Failed(code),
        }
    }

    /// The key that opens a token of this mode and version with a payload of `payload_len`
    /// bytes, `(version, randomized)`; or why none does.
    fn key_of(
        &self,
        mode: Mode,
        version: u32,
        payload_len: usize,
    ) -> Result<(u32, bool), ItemErrorCode> {
        if !self.versions.contains_key(&version) {
            return Err(ItemErrorCode::UnknownKeyVersion);
        }
        let randomized = match mode {
            Mode::Deterministic => false,
            Mode::Randomized => true,
            Mode::Hash => return Err(ItemErrorCode::NotReversible),
            // No token header names it.
            Mode::FormatPreserving => return Err(ItemErrorCode::InvalidToken),
        };
        let nonce_len = if randomized { NONCE_LEN } else { 0 };
        if payload_len < nonce_len + TAG_LEN {
            return Err(ItemErrorCode::InvalidToken);
        }
        Ok((version, randomized))
    }

    /// What a token that is not one of ours that opens, for `code`, is: maybe one of the
    /// replaced service's (none of ours is); else it failed for `code`.
    fn not_ours(&self, domain: Domain<'_>, token: &str, code: ItemErrorCode) -> Opened {
        if !seed::is_seed_token(token) {
            return Opened::Failed(code);
        }
        match self.open_seed(domain, token) {
            Ok((mode, value)) => Opened::Seed(mode, value),
            Err(code) => Opened::Failed(code),
        }
    }

    /// A token of the replaced service: valid only in the compatible domain, and only while its
    /// key is in the keyring (without it, one of the right shape names an unknown key).
    fn open_seed(&self, domain: Domain<'_>, token: &str) -> Result<(Mode, String), ItemErrorCode> {
        if self.compat_domain.as_deref() != Some(domain.as_str()) {
            return Err(ItemErrorCode::InvalidToken);
        }
        match &self.seed {
            Some(cipher) => cipher
                .open(token, &mut Vec::new())
                .map(|(mode, value)| (mode.into(), value)),
            None if seed::has_seed_shape(token) => Err(ItemErrorCode::UnknownKeyVersion),
            None => Err(ItemErrorCode::InvalidToken),
        }
    }
}

/// Hash tokens: HMAC-SHA256 keyed once per batch, the length-prefixed domain absorbed once.
fn seal_hash(
    keys: &VersionKeys,
    header: &str,
    domain: Domain<'_>,
    values: &[Option<&[u8]>],
) -> Texts {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(keys.hash.expose_secret())
        .expect("HMAC takes keys of any length");
    let label = domain.as_str().as_bytes();
    let label_len = u16::try_from(label.len()).expect("domains are at most 64 bytes long");
    mac.update(&label_len.to_be_bytes());
    mac.update(label);
    let token_len = token::encoded_len(header.len(), 32);
    let mut tokens = TextsBuilder::with_capacity(values.len(), token_len);
    for value in values {
        match value {
            Some(value) => {
                let digest = mac.clone().chain_update(value).finalize().into_bytes();
                tokens.push_with(|out| {
                    out.extend_from_slice(header.as_bytes());
                    token::append_payload(out, &digest);
                });
            }
            None => tokens.push_none(),
        }
    }
    tokens_of(tokens)
}

/// The tokens of a batch, checked as UTF-8 once: they are ASCII.
pub(crate) fn tokens_of(builder: TextsBuilder) -> Texts {
    let (tokens, not_utf8) = builder.finish();
    assert!(not_utf8.is_empty(), "a token is ASCII");
    tokens
}

/// What opening one token gave.
enum Opened {
    /// The token was `None`.
    Null,
    /// The token did not open, for this reason.
    Failed(ItemErrorCode),
    /// A token of ours, of this mode: its value is at this range of the buffer it was opened in.
    Ours(Mode, Range<usize>),
    /// A token of the replaced service, and its value.
    Seed(Mode, String),
}

/// A token's mode and value, `None` for `None`, or why it did not open.
type OpenedValue<'a> = Result<Option<(Mode, &'a [u8])>, ItemErrorCode>;

impl Opened {
    /// The mode and value, with `buffer` the one the token was opened in; `None` for `None`.
    fn value<'a>(&'a self, buffer: &'a [u8]) -> OpenedValue<'a> {
        match self {
            Opened::Null => Ok(None),
            Opened::Failed(code) => Err(*code),
            Opened::Ours(mode, range) => Ok(Some((*mode, &buffer[range.clone()]))),
            Opened::Seed(mode, value) => Ok(Some((*mode, value.as_bytes()))),
        }
    }
}

/// The payloads of a batch in one buffer: for each value, a prefix (`[nonce ‖] tag`) and the
/// value's bytes, which the cipher turns into the ciphertext in place; then zeros up to a
/// multiple of three bytes, so that the buffer is what [`token::encode_each`] reads.
pub(crate) struct Payloads {
    pub(crate) buffer: Vec<u8>,
    /// Where each payload is in `buffer`.
    pub(crate) ranges: Vec<Range<usize>>,
    prefix: usize,
}

/// Slices of `buffer` at `ranges`, which must be in ascending order and not overlap.
pub(crate) fn disjoint_mut<T>(
    mut buffer: &mut [T],
    ranges: impl Iterator<Item = std::ops::Range<usize>>,
) -> Vec<&mut [T]> {
    let mut slices = Vec::with_capacity(ranges.size_hint().0);
    let mut consumed = 0;
    for range in ranges {
        let (_, rest) = std::mem::take(&mut buffer).split_at_mut(range.start - consumed);
        let (slice, rest) = rest.split_at_mut(range.len());
        slices.push(slice);
        buffer = rest;
        consumed = range.end;
    }
    slices
}

impl Payloads {
    pub(crate) fn with_prefix<'v>(
        prefix: usize,
        values: impl Iterator<Item = &'v &'v [u8]> + Clone,
    ) -> Self {
        let (count, room) = values.clone().fold((0, 0), |(count, room), value| {
            (count + 1, room + prefix + value.len() + 2)
        });
        // Zeroed at once, the bytes between values are the zeros they need.
        let mut buffer = vec![0; room];
        let mut ranges = Vec::with_capacity(count);
        let mut start = 0;
        for value in values {
            let end = start + prefix + value.len();
            let body = &mut buffer[start + prefix..end];
            if !short_copy::copy_short(body, value) {
                body.copy_from_slice(value);
            }
            ranges.push(start..end);
            start = end.next_multiple_of(3);
        }
        buffer.truncate(start);
        Payloads {
            buffer,
            ranges,
            prefix,
        }
    }

    fn len(&self) -> usize {
        self.ranges.len()
    }

    pub(crate) fn prefix_mut(&mut self, index: usize) -> &mut [u8] {
        let start = self.ranges[index].start;
        &mut self.buffer[start..start + self.prefix]
    }

    /// Every value's bytes, in order, each its own slice of the buffer.
    pub(crate) fn bodies_mut(&mut self) -> Vec<&mut [u8]> {
        let prefix = self.prefix;
        let bodies = self
            .ranges
            .iter()
            .map(|range| range.start + prefix..range.end);
        disjoint_mut(&mut self.buffer, bodies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::new(&Keyring::generate())
    }

    fn vin() -> Domain<'static> {
        Domain::new("vin").expect("valid domain")
    }

    /// A fingerprint is HKDF-SHA256's first 8 bytes under its own label, pinned here (computed
    /// apart with Python's `hmac`): replicas of different builds must show the same one.
    #[test]
    fn fingerprints_are_pinned_and_tell_secrets_apart() {
        let ring = Keyring::from_toml(
            "primary = 1\n[[keys]]\nversion = 1\nsecret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"\n",
            "test",
        )
        .expect("valid");
        assert_eq!(Engine::new(&ring).fingerprints()[&1], "0305f5984ab7ef95");
        assert_ne!(engine().fingerprints()[&1], "0305f5984ab7ef95");
    }

    #[test]
    fn every_reversible_mode_round_trips_and_keeps_nulls_and_order() {
        let engine = engine();
        let values = [Some("WVWZZZ1JZXW000001"), None, Some(""), Some("ünïcødé ✓")];
        for mode in [Mode::Deterministic, Mode::Randomized] {
            let tokens = engine.pseudonymize(vin(), mode, &values);
            assert!(tokens[1].is_none());
            let back = engine.reidentify(vin(), &tokens);
            assert!(back.errors.is_empty(), "{:?}", back.errors);
            let expected: Vec<Option<String>> =
                values.iter().map(|v| v.map(str::to_owned)).collect();
            assert_eq!(back.values, expected, "{mode:?}");
        }
    }

    /// A batch longer than the encoder's groups of 64, values of every length up to 40 and
    /// `None`s at its start, in its middle and at its end: each deterministic token is the one
    /// its value gets alone, and every token opens to its value.
    #[test]
    fn a_long_batch_seals_each_value_as_alone() {
        let engine = engine();
        let values: Vec<Option<String>> = (0..150)
            .map(|i| match i {
                0 | 70 | 149 => None,
                _ => Some("v".repeat(i % 41)),
            })
            .collect();
        let tokens = engine.pseudonymize(vin(), Mode::Deterministic, &values);
        for (value, token) in values.iter().zip(&tokens) {
            let alone =
                engine.pseudonymize(vin(), Mode::Deterministic, std::slice::from_ref(value));
            assert_eq!(token, &alone[0]);
        }
        for mode in [Mode::Deterministic, Mode::Randomized] {
            let tokens = engine.pseudonymize(vin(), mode, &values);
            let back = engine.reidentify(vin(), &tokens);
            assert!(back.errors.is_empty(), "{:?}", back.errors);
            assert_eq!(back.values, values, "{mode:?}");
        }
    }

    /// An authentic token whose value is not UTF-8 (none of ours: values come as strings)
    /// fails on its own row, also where its bytes and its neighbour's make UTF-8 together, and
    /// the failures stay in row order with those of other kinds.
    #[test]
    fn values_that_are_not_utf8_fail_per_item() {
        use ItemErrorCode::{InvalidToken, NotReversible};
        let engine = engine();
        let values: [Option<&[u8]>; 5] = [
            Some(&b"a\xc3"[..]),
            Some(&b"\xa9b"[..]),
            None,
            Some(&b"ok"[..]),
            Some(&b"\xff"[..]),
        ];
        let sealed = engine.seal(Mode::Deterministic, vin(), &values);
        let hashed = engine.pseudonymize(vin(), Mode::Hash, &[Some("h")]);
        let mut tokens: Vec<Option<&str>> = sealed.iter().collect();
        tokens.insert(3, hashed[0].as_deref());
        let codes = |errors: &[ItemError]| -> Vec<(usize, ItemErrorCode)> {
            errors
                .iter()
                .map(|error| (error.index, error.code))
                .collect()
        };
        let expected = [
            (0, InvalidToken),
            (1, InvalidToken),
            (3, NotReversible),
            (5, InvalidToken),
        ];

        let back = engine.reidentify_texts(vin(), &tokens);
        let values: Vec<Option<&str>> = back.values.iter().collect();
        assert_eq!(values, [None, None, None, None, Some("ok"), None]);
        assert_eq!(codes(&back.errors), expected);

        let rewrapped = engine.rewrap_texts(vin(), &tokens);
        let made: Vec<bool> = rewrapped.pseudonyms.iter().map(|t| t.is_some()).collect();
        assert_eq!(made, [false, false, false, false, true, false]);
        assert_eq!(codes(&rewrapped.errors), expected);
    }

    /// One batch of every kind of token at once: each answered on its own row, failures listed
    /// in row order with their codes.
    #[test]
    fn a_batch_of_mixed_tokens_answers_each_on_its_row() {
        let mut keyring = Keyring::generate();
        let old = Engine::new(&keyring);
        keyring.add_version(true).expect("a version number is free");
        let engine = Engine::new(&keyring);
        let values: Vec<Option<String>> = (0..20).map(|i| Some(format!("value-{i}"))).collect();
        let mut tokens: Vec<Option<String>> = Vec::new();
        let mut expected: Vec<Result<Option<String>, ItemErrorCode>> = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let (maker, mode) = match i % 4 {
                0 => (&old, Mode::Deterministic),
                1 => (&engine, Mode::Randomized),
                2 => (&old, Mode::Randomized),
                _ => (&engine, Mode::Deterministic),
            };
            tokens.push(maker.pseudonymize(vin(), mode, std::slice::from_ref(value))[0].clone());
            expected.push(Ok(value.clone()));
            match i % 5 {
                0 => {
                    tokens.push(None);
                    expected.push(Ok(None));
                }
                1 => {
                    let hash = engine.pseudonymize(vin(), Mode::Hash, std::slice::from_ref(value));
                    tokens.push(hash[0].clone());
                    expected.push(Err(ItemErrorCode::NotReversible));
                }
                2 => {
                    tokens.push(Some("r2.AAAA".to_owned()));
                    expected.push(Err(ItemErrorCode::InvalidToken));
                }
                3 => {
                    tokens.push(Some("d9.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()));
                    expected.push(Err(ItemErrorCode::UnknownKeyVersion));
                }
                _ => {
                    let mut forged = tokens.last().cloned().flatten().expect("a token");
                    let last = forged.pop().expect("not empty");
                    forged.push(if last == 'A' { 'B' } else { 'A' });
                    tokens.push(Some(forged));
                    expected.push(Err(ItemErrorCode::InvalidToken));
                }
            }
        }
        // The texts of a batch are decoded together, unless one of them is not base64 at all:
        // then each on its own. Both ways answer each token on its row.
        for not_base64 in [None, Some("d1.AA=A"), Some("r2.AAAAA")] {
            let mut tokens = tokens.clone();
            let mut expected = expected.clone();
            if let Some(text) = not_base64 {
                tokens.insert(3, Some(text.to_owned()));
                expected.insert(3, Err(ItemErrorCode::InvalidToken));
            }
            let answer = engine.reidentify(vin(), &tokens);
            let errors: Vec<ItemError> = expected
                .iter()
                .enumerate()
                .filter_map(|(index, e)| e.clone().err().map(|code| ItemError { index, code }))
                .collect();
            let values: Vec<Option<String>> =
                expected.into_iter().map(|e| e.ok().flatten()).collect();
            assert_eq!(answer.values, values, "{not_base64:?}");
            assert_eq!(answer.errors, errors, "{not_base64:?}");
        }
    }

    #[test]
    fn tokens_name_their_mode_and_version() {
        let engine = engine();
        for (mode, prefix) in [
            (Mode::Deterministic, "d1."),
            (Mode::Randomized, "r1."),
            (Mode::Hash, "h1."),
        ] {
            let tokens = engine.pseudonymize(vin(), mode, &[Some("x")]);
            let token = tokens[0].as_deref().expect("not null");
            assert!(token.starts_with(prefix), "{token}");
        }
    }

    #[test]
    fn determinism_is_per_mode() {
        let engine = engine();
        let twice = [Some("same"), Some("same")];
        let det = engine.pseudonymize(vin(), Mode::Deterministic, &twice);
        let hash = engine.pseudonymize(vin(), Mode::Hash, &twice);
        let rand = engine.pseudonymize(vin(), Mode::Randomized, &twice);
        assert_eq!(det[0], det[1]);
        assert_eq!(hash[0], hash[1]);
        assert_ne!(rand[0], rand[1]);
    }

    #[test]
    fn hash_tokens_are_not_reversible() {
        let engine = engine();
        let tokens = engine.pseudonymize(vin(), Mode::Hash, &[Some("x")]);
        let back = engine.reidentify(vin(), &tokens);
        assert_eq!(back.values, [None]);
        assert_eq!(
            back.errors,
            [ItemError {
                index: 0,
                code: ItemErrorCode::NotReversible
            }]
        );
    }

    #[test]
    fn foreign_keys_and_versions_fail_per_item() {
        let ours = engine();
        let theirs = engine();
        let mut tokens = theirs.pseudonymize(vin(), Mode::Deterministic, &[Some("a")]);
        tokens.push(Some("d7.AAAAAAAAAAAAAAAAAAAAAA".to_owned()));
        tokens.push(ours.pseudonymize(vin(), Mode::Deterministic, &[Some("b")])[0].clone());
        let back = ours.reidentify(vin(), &tokens);
        assert_eq!(back.values, [None, None, Some("b".to_owned())]);
        let codes: Vec<_> = back.errors.iter().map(|e| (e.index, e.code)).collect();
        assert_eq!(
            codes,
            [
                (0, ItemErrorCode::InvalidToken),
                (1, ItemErrorCode::UnknownKeyVersion)
            ]
        );
    }

    /// Found by the `token` fuzz target: a randomized token shorter than its nonce panicked.
    #[test]
    fn tokens_too_short_for_their_nonce_or_tag_are_invalid() {
        let short = [
            "r1.AAAA",
            "r1.",
            "d1.AAAA",
            "d1.",
            "r1.AAAAAAAAAAAAAAAAAAAAAA",
        ];
        let back = engine().reidentify(vin(), &short.map(Some));
        assert_eq!(back.values, [None, None, None, None, None]);
        assert!(
            back.errors
                .iter()
                .all(|error| error.code == ItemErrorCode::InvalidToken)
        );
        assert_eq!(back.errors.len(), short.len());
    }

    fn seed_engine() -> Engine {
        let mut keyring = Keyring::generate();
        let key = crate::seed::SeedKey::from_secret_json(
            r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODw==", "encodedNonceKey": "AQIDBAUGBwg=",
                "nonceStrPos": 0, "nonceEndPos": 12}"#,
        )
        .expect("valid key");
        keyring.import_seed_key(key).expect("first seed key");
        Engine::new(&keyring).with_compat_domain(Domain::new("default").expect("valid"))
    }

    #[test]
    fn seed_tokens_open_and_rewrap_in_the_compatible_domain_only() {
        let engine = seed_engine();
        let default = Domain::new("default").expect("valid");
        let values = [Some("a"), None, Some("ünï")];
        for mode in [SeedMode::Deterministic, SeedMode::Randomized] {
            let old = engine.pseudonymize_seed(mode, &values).expect("seed key");
            assert!(old[0].as_deref().is_some_and(seed::is_seed_token));
            let back = engine.reidentify(default, &old);
            assert_eq!(back.values, values.map(|v| v.map(str::to_owned)));
            let rewrapped = engine.rewrap(default, &old);
            assert!(rewrapped.errors.is_empty());
            assert_eq!(
                engine.reidentify(default, &rewrapped.pseudonyms).values,
                back.values
            );
            if mode == SeedMode::Deterministic {
                let native = engine.pseudonymize(default, Mode::Deterministic, &values);
                assert_eq!(rewrapped.pseudonyms, native);
            }
            let elsewhere = engine.reidentify(vin(), &old);
            assert_eq!(elsewhere.values, [None, None, None]);
            assert!(
                elsewhere
                    .errors
                    .iter()
                    .all(|e| e.code == ItemErrorCode::InvalidToken)
            );
        }
    }

    #[test]
    fn seed_tokens_without_the_seed_key_name_an_unknown_key_and_other_strings_stay_invalid() {
        let old = seed_engine().pseudonymize_seed(SeedMode::Deterministic, &[Some("a")]);
        let default = Domain::new("default").expect("valid");
        let without = engine().with_compat_domain(default);
        let made = without.pseudonymize_seed(SeedMode::Deterministic, &[Some("a")]);
        assert!(made.is_none());
        let mut tokens = old.expect("seed key");
        tokens.extend(["garbage", "", "N/A", "bm9wZQ=="].map(|t| Some(t.to_owned())));
        let back = without.reidentify(default, &tokens);
        let codes: Vec<_> = back.errors.iter().map(|e| e.code).collect();
        let mut expected = vec![ItemErrorCode::UnknownKeyVersion];
        expected.extend([ItemErrorCode::InvalidToken; 4]);
        assert_eq!(codes, expected);
    }

    #[test]
    fn debug_shows_versions_only() {
        assert_eq!(
            format!("{:?}", engine()),
            "Engine { primary: 1, versions: [1], seed_key: false, .. }"
        );
    }
}
