//! Values into tokens: a batch's payloads sealed in one buffer, in place, then encoded many at
//! a time (see [`Payloads`]).

use hmac::{Hmac, Mac};
use pseudonym_client::Mode;
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::Sha256;

use super::keys::VersionKeys;
use super::{Engine, NONCE_LEN, TAG_LEN};
use crate::buffers::Payloads;
use crate::short_copy;
use crate::siv::Block;
use crate::texts::{Texts, TextsBuilder};
use crate::{tink, token};
use pseudonym_client::wire::Domain;

impl Engine {
    /// Tokens of `mode` under the primary version, one per value, `None` kept.
    pub(super) fn seal(&self, mode: Mode, domain: Domain<'_>, values: &[Option<&[u8]>]) -> Texts {
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
        tokens.finish_tokens()
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
    tokens.finish_tokens()
}
