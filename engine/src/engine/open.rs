//! Tokens back into values: a batch's tokens decoded into one buffer, grouped by the key that
//! opens them, and decrypted in place (see [`OpenedBuffer`]); the replaced service's and Tink's
//! tokens told apart from ours and from each other.

use std::ops::Range;

use pseudonym_client::{ItemErrorCode, Mode};

use super::{Engine, NONCE_LEN, TAG_LEN};
use crate::buffers::{OpenedBuffer, disjoint_mut};
use crate::lambda;
use crate::siv::Block;
use crate::{tink, token};
use pseudonym_client::wire::Domain;

impl Engine {
    /// Each token opened, in place: the buffer the values of our tokens and Tink's were
    /// decrypted in, and what each token gave.
    pub(super) fn open<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        tokens: &[Option<S>],
    ) -> (OpenedBuffer, Vec<Opened>) {
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
        let mut buffer = OpenedBuffer::new(buffer);
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
                buffer.bytes()[start..start + 16]
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
            let mut bodies = disjoint_mut(buffer.bytes_mut(), indices.iter().map(|&i| body_of(i)));
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
                    buffer.bytes()[payloads[i].start + tink::PREFIX_LEN..][..16]
                        .try_into()
                        .expect("tink::key_version checked the length")
                })
                .collect();
            let body_of =
                |index: usize| payloads[index].start + tink::HEAD_LEN..payloads[index].end;
            let mut bodies = disjoint_mut(buffer.bytes_mut(), indices.iter().map(|&i| body_of(i)));
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
        match self.open_lambda(domain, token) {
            Ok((mode, value)) => Opened::Lambda(mode, value),
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
        if !lambda::is_lambda_token(token) {
            return Opened::Failed(code);
        }
        match self.open_lambda(domain, token) {
            Ok((mode, value)) => Opened::Lambda(mode, value),
            Err(code) => Opened::Failed(code),
        }
    }

    /// A token of the replaced service: valid only in the compatible domain, and only while its
    /// key is in the keyring (without it, one of the right shape names an unknown key).
    fn open_lambda(
        &self,
        domain: Domain<'_>,
        token: &str,
    ) -> Result<(Mode, String), ItemErrorCode> {
        if self.compat_domain.as_deref() != Some(domain.as_str()) {
            return Err(ItemErrorCode::InvalidToken);
        }
        match &self.lambda {
            Some(cipher) => cipher
                .open(token, &mut Vec::new())
                .map(|(mode, value)| (mode.into(), value)),
            None if lambda::has_lambda_shape(token) => Err(ItemErrorCode::UnknownKeyVersion),
            None => Err(ItemErrorCode::InvalidToken),
        }
    }
}

/// What opening one token gave.
pub(super) enum Opened {
    /// The token was `None`.
    Null,
    /// The token did not open, for this reason.
    Failed(ItemErrorCode),
    /// A token of ours, of this mode: its value is at this range of the buffer it was opened in.
    Ours(Mode, Range<usize>),
    /// A token of the replaced service, and its value.
    Lambda(Mode, String),
}

/// A token's mode and value, `None` for `None`, or why it did not open.
pub(super) type OpenedValue<'a> = Result<Option<(Mode, &'a [u8])>, ItemErrorCode>;

impl Opened {
    /// The mode and value, with `buffer` the one the token was opened in; `None` for `None`.
    pub(super) fn value<'a>(&'a self, buffer: &'a [u8]) -> OpenedValue<'a> {
        match self {
            Opened::Null => Ok(None),
            Opened::Failed(code) => Err(*code),
            Opened::Ours(mode, range) => Ok(Some((*mode, &buffer[range.clone()]))),
            Opened::Lambda(mode, value) => Ok(Some((*mode, value.as_bytes()))),
        }
    }
}
