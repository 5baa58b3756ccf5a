//! The keyed crypto: batches of values to tokens and back. Knows nothing of HTTP.
//!
//! Per key version, one subkey per mode is derived with HKDF-SHA256 (salt [`HKDF_SALT`], one
//! `info` label per mode), so no key is ever used for two purposes:
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
//! Tokens of the replaced service ([`crate::lambda`]) open too, with its imported key, in the one
//! domain they belong to (see [`Engine::with_compat_domain`]); rewrapping turns them into ours.
//!
//! This file holds the engine's public batch operations; what each step decides lives in one
//! file: `keys` (the subkeys of a version), `seal` (values into tokens), `open` (tokens back
//! into values, and which key or format a token belongs to), and `buffers` (the one
//! buffer a batch is sealed or opened in).

mod keys;
mod open;
mod seal;

use std::collections::BTreeMap;

use aes::Aes256;
use pseudonym_client::wire::{ItemError, ReidentifyResponse, RewrapResponse};
use pseudonym_client::{ItemErrorCode, Mode};

use crate::ff1::Ff1;
use crate::keyring::Keyring;
use crate::lambda::{LambdaCipher, LambdaMode};
use crate::siv::Siv;
use crate::texts::{Texts, TextsBuilder};
use crate::tink;
use keys::VersionKeys;
use open::{Opened, OpenedValue};
use pseudonym_client::wire::Domain;

pub use keys::{
    HKDF_SALT, INFO_DETERMINISTIC, INFO_FINGERPRINT, INFO_FORMAT_PRESERVING, INFO_HASH,
    INFO_RANDOMIZED,
};

/// The SIV tag in a token's payload.
const TAG_LEN: usize = 16;
/// The randomized mode's nonce in a token's payload.
const NONCE_LEN: usize = 16;

/// Turns values into tokens and tokens back into values with the keys of one keyring.
///
/// Subkeys are derived once, when the engine is built. Every batch function keeps the order of
/// its input and leaves `None` as `None`.
pub struct Engine {
    primary: u32,
    versions: BTreeMap<u32, VersionKeys>,
    /// The replaced service's key, if the keyring holds it.
    lambda: Option<LambdaCipher>,
    /// The domain the replaced service's tokens belong to; none: they open in no domain.
    compat_domain: Option<String>,
    /// The domains whose deterministic pseudonyms are Tink tokens, with their key of each
    /// version, ready (another domain's are derived per batch).
    tink_domains: BTreeMap<String, BTreeMap<u32, Siv<Aes256>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("primary", &self.primary)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .field("lambda_key", &self.lambda.is_some())
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
            lambda: keyring.lambda_key().map(LambdaCipher::new),
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
    /// `compat_tokens = "lambda"`): same order, `None` stays `None`. `None` as a whole when the
    /// keyring holds no key of that service.
    pub fn pseudonymize_lambda<S: AsRef<str>>(
        &self,
        mode: LambdaMode,
        values: &[Option<S>],
    ) -> Option<Vec<Option<String>>> {
        let cipher = self.lambda.as_ref()?;
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
    pub fn has_lambda_key(&self) -> bool {
        self.lambda.is_some()
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
                values.push_with(|out| buffer.copy_value(range.clone(), out));
                continue;
            }
            match item.value(buffer.bytes()) {
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
                item.value(buffer.bytes()).and_then(|value| match value {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda;

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

    fn lambda_engine() -> Engine {
        let mut keyring = Keyring::generate();
        let key = crate::lambda::LambdaKey::from_secret_json(
            r#"{"encodedSecretKey": "AAECAwQFBgcICQoLDA0ODw==", "encodedNonceKey": "AQIDBAUGBwg=",
                "nonceStrPos": 0, "nonceEndPos": 12}"#,
        )
        .expect("valid key");
        keyring
            .import_lambda_key(key)
            .expect("first key of the Lambda service");
        Engine::new(&keyring).with_compat_domain(Domain::new("default").expect("valid"))
    }

    #[test]
    fn lambda_tokens_open_and_rewrap_in_the_compatible_domain_only() {
        let engine = lambda_engine();
        let default = Domain::new("default").expect("valid");
        let values = [Some("a"), None, Some("ünï")];
        for mode in [LambdaMode::Deterministic, LambdaMode::Randomized] {
            let old = engine
                .pseudonymize_lambda(mode, &values)
                .expect("the Lambda service's key");
            assert!(old[0].as_deref().is_some_and(lambda::is_lambda_token));
            let back = engine.reidentify(default, &old);
            assert_eq!(back.values, values.map(|v| v.map(str::to_owned)));
            let rewrapped = engine.rewrap(default, &old);
            assert!(rewrapped.errors.is_empty());
            assert_eq!(
                engine.reidentify(default, &rewrapped.pseudonyms).values,
                back.values
            );
            if mode == LambdaMode::Deterministic {
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
    fn lambda_tokens_without_its_key_name_an_unknown_key_and_other_strings_stay_invalid() {
        let old = lambda_engine().pseudonymize_lambda(LambdaMode::Deterministic, &[Some("a")]);
        let default = Domain::new("default").expect("valid");
        let without = engine().with_compat_domain(default);
        let made = without.pseudonymize_lambda(LambdaMode::Deterministic, &[Some("a")]);
        assert!(made.is_none());
        let mut tokens = old.expect("the Lambda service's key");
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
            "Engine { primary: 1, versions: [1], lambda_key: false, .. }"
        );
    }
}
