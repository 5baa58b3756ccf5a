//! The printable form of a pseudonym: `<mode letter><key version>.<payload>`.
//!
//! The mode letter is `d` (deterministic), `r` (randomized) or `h` (hash); the key version is a
//! decimal number without leading zeros; the payload is base64url without padding. Only this one
//! spelling of a token is accepted, so a token has exactly one form and any edit is detected.
//!
//! The payload is encoded and decoded with `base64-simd`, two to three times as fast as the
//! `base64` crate on a token's 44 characters. `base64` stays the reference: property tests
//! below (texts near a token's, and real spellings of up to 300 bytes with any one byte
//! changed) and the token fuzz target check that both accept the same texts (the canonical
//! ones: no padding, no other alphabet, no stray trailing bits) and read them the same.

use std::ops::Range;

use base64_simd::URL_SAFE_NO_PAD;
use pseudonym_client::Mode;

use crate::short_copy;

/// The letter that stands for `mode` in a token.
///
/// # Panics
/// For `format-preserving`, whose pseudonyms are no tokens (see [`crate::preserving`]).
pub fn mode_letter(mode: Mode) -> char {
    match mode {
        Mode::Deterministic => 'd',
        Mode::Randomized => 'r',
        Mode::Hash => 'h',
        Mode::FormatPreserving => panic!("format-preserving pseudonyms are not tokens"),
    }
}

/// The token prefix up to and including the dot, e.g. `d1.`.
pub fn header(mode: Mode, version: u32) -> String {
    format!("{}{version}.", mode_letter(mode))
}

/// Appends the payload part of a token to `out`, which already holds the [`header`].
pub fn append_payload(out: &mut Vec<u8>, payload: &[u8]) {
    URL_SAFE_NO_PAD.encode_append(payload, out);
}

/// Calls `each` with the text of every payload of a batch, in order, as `(window, len)`: the
/// text is `window[..len]`, and `window` goes on for at least [`short_copy::TEXT_WINDOW`] bytes, so
/// that the text is copied in line. Payload `i` is at `ranges[i]` of `buffer`, and is followed
/// by zeros up to a multiple of three bytes, where the next payload starts.
///
/// The payloads are encoded many at a time: base64 of `a ‖ b` is base64 of `a` followed by
/// base64 of `b` when the length of `a` is a multiple of three, and the text of a payload whose
/// length is not (without padding) is the start of the text of the payload followed by one or
/// two zero bytes. So `base64-simd` runs at its full width over many payloads instead of
/// finishing each short one in its scalar code; a few dozen at a time, so that their text is
/// still in the cache when `each` copies it.
pub(crate) fn encode_each(
    buffer: &[u8],
    ranges: &[Range<usize>],
    mut each: impl FnMut(&[u8], usize),
) {
    const PAYLOADS_AT_ONCE: usize = 64;
    let mut text = Vec::new();
    for (chunk, payloads) in ranges.chunks(PAYLOADS_AT_ONCE).enumerate() {
        let start = payloads[0].start;
        let end = ranges
            .get((chunk + 1) * PAYLOADS_AT_ONCE)
            .map_or(buffer.len(), |next| next.start);
        text.clear();
        URL_SAFE_NO_PAD.encode_append(&buffer[start..end], &mut text);
        text.extend_from_slice(&[0; short_copy::TEXT_WINDOW]);
        for payload in payloads {
            debug_assert_eq!((payload.start - start) % 3, 0, "slots of multiples of 3");
            debug_assert!(
                buffer[payload.end..payload.end.next_multiple_of(3).min(end)]
                    .iter()
                    .all(|&byte| byte == 0),
                "zeros after a payload"
            );
            let from = (payload.start - start) / 3 * 4;
            each(&text[from..], encoded_len(0, payload.len()));
        }
    }
}

/// Length of a token with a header of `header_len` bytes around a payload of `payload_len`.
pub fn encoded_len(header_len: usize, payload_len: usize) -> usize {
    header_len + (payload_len * 4).div_ceil(3)
}

/// A token that is not in the one accepted spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Splits a token into its mode and key version, and decodes its payload onto the end of
/// `payload` (on an error what was appended is unspecified).
pub fn parse(token: &str, payload: &mut Vec<u8>) -> Result<(Mode, u32), Malformed> {
    let (mode, version, text) = split(token)?;
    URL_SAFE_NO_PAD
        .decode_append(text, payload)
        .map_err(|_| Malformed)?;
    Ok((mode, version))
}

/// Splits a token into its mode, its key version and the text of its payload, not yet
/// decoded (see [`decode_each`]).
pub fn split(token: &str) -> Result<(Mode, u32, &[u8]), Malformed> {
    let (&letter, rest) = token.as_bytes().split_first().ok_or(Malformed)?;
    let mode = match letter {
        b'd' => Mode::Deterministic,
        b'r' => Mode::Randomized,
        b'h' => Mode::Hash,
        _ => return Err(Malformed),
    };
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let canonical =
        (1..=10).contains(&digits) && rest[0] != b'0' && rest.get(digits) == Some(&b'.');
    if !canonical {
        return Err(Malformed);
    }
    let version = rest[..digits].iter().try_fold(0u32, |version, digit| {
        version
            .checked_mul(10)?
            .checked_add(u32::from(digit - b'0'))
    });
    let version = version.ok_or(Malformed)?;
    Ok((mode, version, &rest[digits + 1..]))
}

/// Decodes the payload `texts` of a batch onto the end of `payloads`, and tells where each
/// one's bytes are, or that a text is not in the one accepted spelling.
///
/// The texts are decoded together, in one call: `base64-simd` decodes 32 characters at a time
/// but the last 6 to 37 of a call one at a time, 5-10 times slower, and a token's text is 30
/// to 70 characters long. Each text is followed by `A`s, which are zero bits, up to a multiple
/// of four characters, so that each one's bytes start where the last one's ended. Its bytes
/// are followed by those of its `A`s, which are all zero exactly when its last character has
/// no stray bits set (the only spelling accepted). If a text is not base64 (its length is
/// `4n + 1`, or a character is not of the alphabet), the texts are decoded one at a time, to
/// find which. `payloads` grows at most once, before any text is decoded, with room after the
/// payloads for a value's window (`short_copy::VALUE_WINDOW`).
pub fn decode_each(
    texts: &[&[u8]],
    payloads: &mut Vec<u8>,
) -> Vec<Result<Range<usize>, Malformed>> {
    decode_each_in(&URL_SAFE_NO_PAD, texts, payloads)
}

/// [`decode_each`] in another alphabet of base64 without padding (Tink tokens' standard
/// one, their padding taken off first): `A` is zero bits in both.
pub(crate) fn decode_each_in(
    base64: &base64_simd::Base64,
    texts: &[&[u8]],
    payloads: &mut Vec<u8>,
) -> Vec<Result<Range<usize>, Malformed>> {
    let with_zeros = |text: &[u8]| text.len().next_multiple_of(4);
    let mut joined = vec![b'A'; texts.iter().map(|text| with_zeros(text)).sum()];
    let mut at = 0;
    for text in texts {
        let slot = &mut joined[at..at + text.len()];
        if !short_copy::copy_short(slot, text) {
            slot.copy_from_slice(text);
        }
        at += with_zeros(text);
    }
    // As many bytes as the joined texts decode to, the most the texts one at a time do.
    payloads.reserve(joined.len() / 4 * 3 + short_copy::VALUE_WINDOW);
    let start = payloads.len();
    // A length of 4n + 1 is not base64, and must not become base64 with the `A`s.
    let together = !texts.iter().any(|text| text.len() % 4 == 1)
        && base64.decode_append(&joined, payloads).is_ok();
    if !together {
        payloads.truncate(start);
        return texts
            .iter()
            .map(|text| {
                let start = payloads.len();
                match base64.decode_append(text, payloads) {
                    Ok(()) => Ok(start..payloads.len()),
                    Err(_) => {
                        payloads.truncate(start);
                        Err(Malformed)
                    }
                }
            })
            .collect();
    }
    let mut start = start;
    texts
        .iter()
        .map(|text| {
            let bytes = start..start + text.len() * 3 / 4;
            let zeros = bytes.end..start + with_zeros(text) / 4 * 3;
            start = zeros.end;
            match payloads[zeros].iter().all(|&byte| byte == 0) {
                true => Ok(bytes),
                false => Err(Malformed),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let mut token = header(Mode::Randomized, 12).into_bytes();
        append_payload(&mut token, &[0xfb, 0xff, 0x00, 0x10]);
        let token = String::from_utf8(token).expect("ASCII");
        assert_eq!(token, "r12.-_8AEA");
        assert_eq!(token.len(), encoded_len(4, 4));
        let mut payload = Vec::new();
        assert_eq!(parse(&token, &mut payload), Ok((Mode::Randomized, 12)));
        assert_eq!(payload, [0xfb, 0xff, 0x00, 0x10]);
    }

    #[test]
    fn only_the_canonical_spelling_parses() {
        let mut payload = Vec::new();
        for bad in [
            "",
            "d1",
            "x1.AAAA",
            "d.AAAA",
            "d01.AAAA",
            "d+1.AAAA",
            "d1.AAA=",
            "d1.AB",
            "D1.AAAA",
            "d1.AA AA",
            "d99999999999.AAAA",
            "d4294967296.AAAA",
        ] {
            assert_eq!(parse(bad, &mut payload), Err(Malformed), "{bad}");
        }
    }

    /// Texts near a token's payload: mostly base64url, sometimes padding, the standard
    /// alphabet's `+` and `/`, spaces, dots or bytes that are not ASCII.
    fn payload_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::strategy::Strategy as _;
        proptest::string::string_regex("([A-Za-z0-9_-]{0,8}[=+/ .\\n\u{e9}\u{0}]?){0,6}")
            .expect("a valid pattern")
            .prop_map(String::into_bytes)
    }

    /// The spelling of random bytes up to 300 long (long enough for every SIMD path), with one
    /// byte, any byte, put anywhere.
    fn payload_edited() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use base64::Engine as _;
        use proptest::strategy::Strategy as _;
        let bytes = proptest::collection::vec(proptest::num::u8::ANY, 0..300);
        (bytes, proptest::num::usize::ANY, proptest::num::u8::ANY).prop_map(|(bytes, at, byte)| {
            let mut text = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into_bytes();
            if !text.is_empty() {
                let at = at % text.len();
                text[at] = byte;
            }
            text
        })
    }

    /// `base64-simd` accepts what the `base64` crate accepts and nothing else, reads it the
    /// same, and writes back the same text.
    fn decodes_as_the_reference_does(
        text: &[u8],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        use base64::Engine as _;
        let reference = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok();
        let mut ours = Vec::new();
        let ours = URL_SAFE_NO_PAD
            .decode_append(text, &mut ours)
            .ok()
            .map(|()| ours);
        proptest::prop_assert_eq!(&ours, &reference);
        if let Some(bytes) = reference {
            let mut again = Vec::new();
            append_payload(&mut again, &bytes);
            proptest::prop_assert_eq!(again, text);
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        #[test]
        fn payloads_like_tokens_decode_as_the_reference_does(text in payload_like()) {
            decodes_as_the_reference_does(&text)?;
        }

        #[test]
        fn edited_payloads_decode_as_the_reference_does(text in payload_edited()) {
            decodes_as_the_reference_does(&text)?;
        }

        /// Any payload comes back from its text, and its text is the reference's.
        #[test]
        fn payloads_encode_as_the_reference_does(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            use base64::Engine as _;
            let mut text = Vec::new();
            append_payload(&mut text, &bytes);
            let reference = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
            proptest::prop_assert_eq!(&text, reference.as_bytes());
            let mut back = Vec::new();
            proptest::prop_assert!(URL_SAFE_NO_PAD.decode_append(&text, &mut back).is_ok());
            proptest::prop_assert_eq!(back, bytes);
        }
    }

    /// Texts of payloads as a batch has them: mostly real spellings, some with their last
    /// character changed to another of the alphabet (so some with stray bits set), and now and
    /// then one near a token's that is not base64 at all.
    fn batch_texts() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
        use base64::Engine as _;
        use proptest::strategy::Strategy as _;
        let spelled = proptest::collection::vec(proptest::num::u8::ANY, 0..80)
            .prop_map(|bytes| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        let last_changed = (spelled.clone(), 0..64usize).prop_map(|(text, letter)| {
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut text = text.into_bytes();
            if let Some(last) = text.last_mut() {
                *last = alphabet[letter];
            }
            text
        });
        let text = proptest::prop_oneof![
            6 => spelled.prop_map(String::into_bytes),
            3 => last_changed,
            1 => payload_like(),
        ];
        proptest::collection::vec(text, 0..24)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]

        /// Texts decoded together read as each read alone by the `base64` crate, and are
        /// refused where it refuses them.
        #[test]
        fn texts_decoded_together_read_as_each_alone(texts in batch_texts()) {
            use base64::Engine as _;
            let texts: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
            let mut payloads = vec![7; 5];
            let decoded = decode_each(&texts, &mut payloads);
            proptest::prop_assert_eq!(decoded.len(), texts.len());
            proptest::prop_assert_eq!(&payloads[..5], &[7; 5]);
            for (text, range) in texts.iter().zip(decoded) {
                let reference = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok();
                let ours = range.ok().map(|range| payloads[range].to_vec());
                proptest::prop_assert_eq!(ours, reference);
            }
        }
    }

    proptest::proptest! {
        // Up to 150 payloads a case, so that many cases cross the encoder's groups of 64.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1_000))]

        /// Payloads encoded in a batch read as each encoded on its own.
        #[test]
        fn payloads_encoded_together_read_as_each_alone(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..150),
        ) {
            let mut buffer = Vec::new();
            let mut ranges = Vec::new();
            for payload in &payloads {
                let start = buffer.len();
                buffer.extend_from_slice(payload);
                ranges.push(start..buffer.len());
                buffer.resize(buffer.len().next_multiple_of(3), 0);
            }
            let mut together = Vec::new();
            encode_each(&buffer, &ranges, |text, len| together.push(text[..len].to_vec()));
            let alone: Vec<Vec<u8>> = payloads
                .iter()
                .map(|payload| {
                    let mut text = Vec::new();
                    append_payload(&mut text, payload);
                    text
                })
                .collect();
            proptest::prop_assert_eq!(together, alone);
        }
    }
}
