//! The printable form of a pseudonym: `<mode letter><key version>.<payload>`.
//!
//! The mode letter is `d` (deterministic), `r` (randomized) or `h` (hash); the key version is a
//! decimal number without leading zeros; the payload is base64url without padding. Only this one
//! spelling of a token is accepted, so a token has exactly one form and any edit is detected.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pseudonym_client::Mode;

/// The letter that stands for `mode` in a token.
pub fn mode_letter(mode: Mode) -> char {
    match mode {
        Mode::Deterministic => 'd',
        Mode::Randomized => 'r',
        Mode::Hash => 'h',
    }
}

/// The token prefix up to and including the dot, e.g. `d1.`.
pub fn header(mode: Mode, version: u32) -> String {
    format!("{}{version}.", mode_letter(mode))
}

/// Appends the token of `payload` to `out`, which already holds the [`header`].
pub fn append_payload(out: &mut String, payload: &[u8]) {
    // A payload of a typical value is encoded on the stack: `encode_string` clears a 1 KiB
    // buffer per call, which cost more than the encoding of a VIN's token.
    let mut encoded = [0u8; 128];
    match URL_SAFE_NO_PAD.encode_slice(payload, &mut encoded) {
        Ok(len) => out.push_str(std::str::from_utf8(&encoded[..len]).expect("base64 is ASCII")),
        Err(_) => URL_SAFE_NO_PAD.encode_string(payload, out),
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
/// `payload` (so the payloads of a batch go one after the other into one buffer; on an error
/// what was appended is unspecified).
pub fn parse(token: &str, payload: &mut Vec<u8>) -> Result<(Mode, u32), Malformed> {
    let (head, body) = token.split_once('.').ok_or(Malformed)?;
    let mut chars = head.chars();
    let mode = match chars.next() {
        Some('d') => Mode::Deterministic,
        Some('r') => Mode::Randomized,
        Some('h') => Mode::Hash,
        _ => return Err(Malformed),
    };
    let digits = chars.as_str();
    let canonical = !digits.is_empty()
        && digits.len() <= 10
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !canonical {
        return Err(Malformed);
    }
    let version = digits.parse().map_err(|_| Malformed)?;
    URL_SAFE_NO_PAD
        .decode_vec(body, payload)
        .map_err(|_| Malformed)?;
    Ok((mode, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let mut token = header(Mode::Randomized, 12);
        append_payload(&mut token, &[0xfb, 0xff, 0x00, 0x10]);
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
}
