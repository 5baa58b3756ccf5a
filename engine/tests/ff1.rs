//! FF1 against the standard's samples and against the `fpe` crate, an independent
//! implementation, on random keys, radixes, lengths and tweaks.

use aes::Aes256;
use fpe::ff1::{FF1, FlexibleNumeralString};
use proptest::prelude::*;
use pseudonym_engine::ff1::{Ff1, Ff1Error, Radix};
use serde::Deserialize;

#[derive(Deserialize)]
struct Samples {
    key: String,
    samples: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    sample: u32,
    radix: u32,
    tweak: String,
    plaintext: String,
    ciphertext: String,
}

/// Numerals written as `0-9a-z`, as the standard's samples write them.
fn numerals(text: &str) -> Vec<u16> {
    text.chars()
        .map(|c| c.to_digit(36).expect("a base-36 digit") as u16)
        .collect()
}

fn radix(radix: u32) -> Radix {
    Radix::new(radix).expect("a valid radix")
}

fn encrypt(ff1: &Ff1, radix: Radix, tweak: &[u8], plain: &[u16]) -> Result<Vec<u16>, Ff1Error> {
    let mut string = plain.to_vec();
    match ff1.encrypt(radix, &mut [&mut string], &[tweak])[0] {
        None => Ok(string),
        Some(error) => Err(error),
    }
}

fn decrypt(ff1: &Ff1, radix: Radix, tweak: &[u8], cipher: &[u16]) -> Vec<u16> {
    let mut string = cipher.to_vec();
    assert_eq!(ff1.decrypt(radix, &mut [&mut string], &[tweak])[0], None);
    string
}

#[test]
fn the_standards_samples() {
    let file: Samples = serde_json::from_str(include_str!("data/ff1-nist-aes256.json"))
        .expect("valid samples file");
    let key: [u8; 32] = hex::decode(&file.key)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let ff1 = Ff1::new(&key);
    for sample in file.samples {
        let tweak = hex::decode(&sample.tweak).expect("hex");
        let plain = numerals(&sample.plaintext);
        let cipher = numerals(&sample.ciphertext);
        let ours = encrypt(&ff1, radix(sample.radix), &tweak, &plain).expect("valid sample");
        assert_eq!(ours, cipher, "sample {}", sample.sample);
        assert_eq!(decrypt(&ff1, radix(sample.radix), &tweak, &cipher), plain);
    }
}

#[test]
fn strings_of_many_lengths_run_in_lockstep_alike() {
    let ff1 = Ff1::new(&[7; 32]);
    // Lengths 6 to 40 four times over: more strings than two groups of lanes hold, halves
    // whose moduli are below 2^32, from 2^32 to 2^63, and above.
    let mut strings: Vec<Vec<u16>> = (0..140)
        .map(|k| {
            let len = 6 + k % 35;
            (0..len).map(|i| ((i * 7 + k) % 10) as u16).collect()
        })
        .collect();
    let tweaks: Vec<Vec<u8>> = (0..strings.len()).map(|i| vec![i as u8; i % 40]).collect();
    let alone: Vec<Vec<u16>> = strings
        .iter()
        .zip(&tweaks)
        .map(|(s, t)| encrypt(&ff1, radix(10), t, s).expect("valid"))
        .collect();
    let originals = strings.clone();
    let tweak_refs: Vec<&[u8]> = tweaks.iter().map(Vec::as_slice).collect();
    let mut refs: Vec<&mut [u16]> = strings.iter_mut().map(Vec::as_mut_slice).collect();
    assert!(
        ff1.encrypt(radix(10), &mut refs, &tweak_refs)
            .iter()
            .all(Option::is_none)
    );
    assert_eq!(strings, alone);
    let mut refs: Vec<&mut [u16]> = strings.iter_mut().map(Vec::as_mut_slice).collect();
    assert!(
        ff1.decrypt(radix(10), &mut refs, &tweak_refs)
            .iter()
            .all(Option::is_none)
    );
    assert_eq!(strings, originals);
}

#[test]
fn the_limits_are_the_standards_and_ours() {
    let ff1 = Ff1::new(&[1; 32]);
    // 10^6 is the smallest domain: six digits pass, five do not.
    let [binary, decimal, vin, alnum, widest] = [2, 10, 33, 62, 65536].map(radix);
    assert_eq!(decimal.min_len(), 6);
    assert!(encrypt(&ff1, decimal, b"", &[1; 6]).is_ok());
    assert_eq!(
        encrypt(&ff1, decimal, b"", &[1; 5]),
        Err(Ff1Error::TooShort)
    );
    assert_eq!(binary.min_len(), 20);
    assert_eq!(
        encrypt(&ff1, binary, b"", &[1; 19]),
        Err(Ff1Error::TooShort)
    );
    assert_eq!(widest.min_len(), 2);
    assert_eq!(encrypt(&ff1, widest, b"", &[9]), Err(Ff1Error::TooShort));
    // A half of at most 96 bits.
    assert_eq!(decimal.max_len(), 56);
    assert_eq!(vin.max_len(), 38);
    assert_eq!(alnum.max_len(), 32);
    assert!(encrypt(&ff1, decimal, b"", &[3; 56]).is_ok());
    assert_eq!(
        encrypt(&ff1, decimal, b"", &[3; 57]),
        Err(Ff1Error::TooLong)
    );
    assert!(Radix::new(1).is_err());
    assert!(Radix::new(65537).is_err());
}

/// A radix, and a numeral string of it that FF1 takes.
fn radix_and_string() -> impl Strategy<Value = (u32, Vec<u16>)> {
    prop_oneof![2u32..=64, 65u32..=65536].prop_flat_map(|radix| {
        let lengths = Radix::new(radix).map_or(0..=0, |r| r.min_len()..=r.max_len());
        let numeral = 0..u16::try_from(radix - 1).unwrap_or(u16::MAX) as u32 + 1;
        (
            Just(radix),
            prop::collection::vec(numeral.prop_map(|n| n as u16), lengths),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_the_fpe_crate(
        key in prop::array::uniform32(any::<u8>()),
        (radix, plain) in radix_and_string(),
        tweak in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        let ours = encrypt(&Ff1::new(&key), Radix::new(radix).expect("valid"), &tweak, &plain)
            .expect("within our limits");
        let reference = FF1::<Aes256>::new(&key, radix).expect("a valid radix");
        let theirs: Vec<u16> = reference
            .encrypt(&tweak, &FlexibleNumeralString::from(plain.clone()))
            .expect("within the standard's limits")
            .into();
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(decrypt(&Ff1::new(&key), Radix::new(radix).expect("valid"), &tweak, &ours), plain);
    }
}
