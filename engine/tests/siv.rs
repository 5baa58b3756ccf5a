//! The batch AES-SIV of [`pseudonym_engine::siv`] against its references: RFC 5297's test
//! vectors (with AES-128, as the RFC gives them), and the `aes-siv` crate's `Aes256Siv` (what
//! the engine's tokens were first made with) for random keys, headers and values of every
//! length, sealed and opened in batches.

use aes::{Aes128, Aes256};
use aes_siv::aead::KeyInit;
use aes_siv::aead::generic_array::GenericArray;
use aes_siv::siv::Aes256Siv;
use proptest::prelude::*;
use pseudonym_engine::siv::{Block, Siv};
use serde::Deserialize;

#[derive(Deserialize)]
struct RfcFile {
    vectors: Vec<RfcVector>,
}

#[derive(Deserialize)]
struct RfcVector {
    name: String,
    key: String,
    associated_data: Vec<String>,
    plaintext: String,
    output: String,
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).expect("test data is hex")
}

/// Seals `values` after `headers` as one batch; `tag ‖ ciphertext` per value.
fn seal<C>(siv: &Siv<C>, headers: &[&[u8]], values: &[Vec<u8>]) -> Vec<Vec<u8>>
where
    C: aes::cipher::BlockCipherEncrypt<BlockSize = aes::cipher::consts::U16> + aes::cipher::KeyInit,
{
    let state = siv.absorb(headers);
    let mut sealed: Vec<Vec<u8>> = values.to_vec();
    let mut slices: Vec<&mut [u8]> = sealed.iter_mut().map(Vec::as_mut_slice).collect();
    let tags = siv.seal(|_| state, &mut slices);
    tags.iter()
        .zip(sealed)
        .map(|(tag, ciphertext)| [tag.as_slice(), &ciphertext].concat())
        .collect()
}

#[test]
fn rfc5297_vectors_pass_through_the_batch_code() {
    let file: RfcFile =
        serde_json::from_str(include_str!("data/rfc5297.json")).expect("valid test data");
    assert_eq!(file.vectors.len(), 2);
    for vector in file.vectors {
        let siv = Siv::<Aes128>::new(&unhex(&vector.key)).expect("a 256-bit key");
        let headers: Vec<Vec<u8>> = vector.associated_data.iter().map(|h| unhex(h)).collect();
        let headers: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
        let plaintext = unhex(&vector.plaintext);
        let output = seal(&siv, &headers, std::slice::from_ref(&plaintext));
        assert_eq!(hex::encode(&output[0]), vector.output, "{}", vector.name);

        let (tag, ciphertext) = output[0].split_at(16);
        let mut opened = ciphertext.to_vec();
        let state = siv.absorb(&headers);
        let tag: Block = tag.try_into().expect("16 bytes");
        let authentic = siv.open(|_| state, &[tag], &mut [opened.as_mut_slice()]);
        assert_eq!((authentic[0], opened), (true, plaintext), "{}", vector.name);
    }
}

#[test]
fn keys_of_another_length_are_refused() {
    assert!(Siv::<Aes256>::new(&[0; 32]).is_none());
    assert!(Siv::<Aes256>::new(&[0; 63]).is_none());
    assert!(Siv::<Aes256>::new(&[0; 64]).is_some());
}

fn values() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..70), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every output, and every verdict on a tampered one, is the reference's.
    #[test]
    fn batches_are_byte_for_byte_the_reference(
        key in prop::collection::vec(any::<u8>(), 64),
        domain in prop::collection::vec(any::<u8>(), 0..80),
        nonce in any::<[u8; 16]>(),
        values in values(),
        flip in any::<(usize, u8)>(),
    ) {
        let siv = Siv::<Aes256>::new(&key).expect("a 512-bit key");
        let mut reference = Aes256Siv::new(GenericArray::from_slice(&key));
        for headers in [vec![domain.as_slice()], vec![domain.as_slice(), nonce.as_slice()]] {
            let sealed = seal(&siv, &headers, &values);
            for (value, ours) in values.iter().zip(&sealed) {
                let theirs = reference.encrypt(&headers, value).expect("encrypts");
                prop_assert_eq!(ours, &theirs);
            }

            // Open the batch with one byte of one item flipped: only that item fails, as it
            // fails for the reference, and it comes back wiped.
            let state = siv.absorb(&headers);
            let mut tampered = sealed.clone();
            let target = (!tampered.is_empty()).then(|| flip.0 % tampered.len());
            if let Some(index) = target {
                let item = &mut tampered[index];
                let at = flip.0 % item.len();
                item[at] ^= flip.1 | 1;
            }
            let tags: Vec<Block> = tampered.iter().map(|t| t[..16].try_into().expect("tag")).collect();
            let mut bodies: Vec<Vec<u8>> = tampered.iter().map(|t| t[16..].to_vec()).collect();
            let mut slices: Vec<&mut [u8]> = bodies.iter_mut().map(Vec::as_mut_slice).collect();
            let authentic = siv.open(|_| state, &tags, &mut slices);
            for (index, item) in tampered.iter().enumerate() {
                let theirs = reference.decrypt(&headers, item);
                prop_assert_eq!(authentic[index], theirs.is_ok());
                match theirs {
                    Ok(plain) => prop_assert_eq!(&bodies[index], &plain),
                    Err(_) => prop_assert!(bodies[index].iter().all(|&b| b == 0)),
                }
            }
        }
    }

    /// A batch where each value has its own last header (the randomized mode's nonce): each
    /// output is what the reference makes with its nonce, and each opens again with its own
    /// state, except one whose ciphertext or tag was changed, which is wiped.
    #[test]
    fn a_header_per_value_seals_as_the_reference(
        key in prop::collection::vec(any::<u8>(), 64),
        domain in prop::collection::vec(any::<u8>(), 0..40),
        items in prop::collection::vec((any::<[u8; 16]>(), prop::collection::vec(any::<u8>(), 0..50)), 9..30),
        forged in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let siv = Siv::<Aes256>::new(&key).expect("a 512-bit key");
        let mut reference = Aes256Siv::new(GenericArray::from_slice(&key));
        let nonces: Vec<Block> = items.iter().map(|(nonce, _)| *nonce).collect();
        let states = siv.absorb_each(&siv.absorb(&[&domain]), &nonces);
        let mut bodies: Vec<Vec<u8>> = items.iter().map(|(_, value)| value.clone()).collect();
        let mut slices: Vec<&mut [u8]> = bodies.iter_mut().map(Vec::as_mut_slice).collect();
        let tags = siv.seal(|i| states[i], &mut slices);
        for (((nonce, value), tag), body) in items.iter().zip(&tags).zip(&bodies) {
            let theirs = reference.encrypt([domain.as_slice(), nonce.as_slice()], value).expect("encrypts");
            prop_assert_eq!([tag.as_slice(), body].concat(), theirs);
        }
        // One bit of one item's tag or ciphertext changed.
        let forged = forged.index(bodies.len());
        let mut tags = tags;
        let bit = flip.index(8 * (16 + bodies[forged].len()));
        match bit.checked_sub(8 * 16) {
            None => tags[forged][bit / 8] ^= 1 << (bit % 8),
            Some(bit) => bodies[forged][bit / 8] ^= 1 << (bit % 8),
        }
        let mut slices: Vec<&mut [u8]> = bodies.iter_mut().map(Vec::as_mut_slice).collect();
        let authentic = siv.open(|i| states[i], &tags, &mut slices);
        for (index, ((_, value), body)) in items.iter().zip(&bodies).enumerate() {
            prop_assert_eq!(authentic[index], index != forged);
            match index == forged {
                true => prop_assert!(body.iter().all(|&b| b == 0)),
                false => prop_assert_eq!(body, value),
            }
        }
    }

    /// The nonce-per-value path: `absorb_each` gives the state `absorb` gives with the nonce
    /// as one more header.
    #[test]
    fn one_more_header_per_value_is_the_same_state(
        key in prop::collection::vec(any::<u8>(), 64),
        domain in prop::collection::vec(any::<u8>(), 0..80),
        nonces in prop::collection::vec(any::<[u8; 16]>(), 0..20),
    ) {
        let siv = Siv::<Aes256>::new(&key).expect("a 512-bit key");
        let state = siv.absorb(&[&domain]);
        let each = siv.absorb_each(&state, &nonces);
        for (nonce, state) in nonces.iter().zip(each) {
            prop_assert_eq!(state, siv.absorb(&[&domain, nonce]));
        }
    }
}
