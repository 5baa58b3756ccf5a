//! Copies of the few bytes of a value or a token, in pieces of a fixed length.
//!
//! A copy whose length is known only at run time compiles to a call to `memmove`, and for the
//! few dozen bytes of a value or a token the call costs more than the copy: three to five such
//! calls per value took a fifth of the deterministic mode's time (`perf`, 2026-12-03). A copy of
//! a fixed length compiles to a few vector moves in line. So:
//!
//! - [`extend_from_window`] appends the start of a slice that goes on past the bytes wanted: a
//!   fixed number of bytes are copied and the excess is dropped again;
//! - [`copy_short`] copies up to 64 bytes in two pieces of a fixed length that overlap where
//!   the bytes are shorter than both, for bytes with nothing readable after them;
//! - [`read_short`] and [`write_short`] do the same between up to 16 bytes and a 128-bit
//!   word, for a value shorter than a block. A block made in memory piece by piece and then
//!   read whole makes the CPU wait for the pieces (a failed store-to-load forwarding): that
//!   wait made values of a few bytes slower to seal than a VIN (`perf`, 2026-12-03).

/// How many bytes [`extend_from_window`] copies at once for a token's text: enough for a
/// randomized token's payload of up to 64 bytes (a value of up to 32).
pub const TEXT_WINDOW: usize = 96;

/// How many bytes [`extend_from_window`] copies at once for a value.
pub const VALUE_WINDOW: usize = 32;

/// Appends `bytes[..len]` to `out`. In line when `len` is at most `N` and `bytes` holds at least
/// `N` bytes; else with `memmove`.
pub fn extend_from_window<const N: usize>(out: &mut Vec<u8>, bytes: &[u8], len: usize) {
    match bytes.first_chunk::<N>() {
        Some(window) if len <= N => {
            let end = out.len() + len;
            out.extend_from_slice(window);
            out.truncate(end);
        }
        _ => out.extend_from_slice(&bytes[..len]),
    }
}

/// Copies `src` to the start of `dst` and returns `true` if `src` is at most 64 bytes long;
/// else copies nothing and returns `false`.
///
/// # Panics
/// If `dst` is shorter than `src`.
pub fn copy_short(dst: &mut [u8], src: &[u8]) -> bool {
    src.is_empty()
        || copy_in_two::<32>(dst, src)
        || copy_in_two::<16>(dst, src)
        || copy_in_two::<8>(dst, src)
        || copy_in_two::<4>(dst, src)
        || copy_in_two::<2>(dst, src)
        || copy_in_two::<1>(dst, src)
}

/// Copies `src`, `N` to `2N` bytes long, as its first `N` bytes and its last `N`.
fn copy_in_two<const N: usize>(dst: &mut [u8], src: &[u8]) -> bool {
    let len = src.len();
    match (src.first_chunk::<N>(), src.last_chunk::<N>()) {
        (Some(first), Some(last)) if len <= 2 * N => {
            dst[..N].copy_from_slice(first);
            dst[len - N..len].copy_from_slice(last);
            true
        }
        _ => false,
    }
}

/// `bytes`, at most 16 of them, as the start of a little-endian 128-bit word whose other bytes
/// are zero; `None` for more than 16 bytes.
pub fn read_short(bytes: &[u8]) -> Option<u128> {
    if bytes.is_empty() {
        return Some(0);
    }
    read_in_two::<8>(bytes)
        .or_else(|| read_in_two::<4>(bytes))
        .or_else(|| read_in_two::<2>(bytes))
        .or_else(|| read_in_two::<1>(bytes))
}

/// Writes the first `bytes.len()` bytes of `word` (little-endian) over `bytes`, which must be
/// at most 16 bytes long: the other way of [`read_short`].
///
/// # Panics
/// If `bytes` is longer than 16 bytes.
pub fn write_short(bytes: &mut [u8], word: u128) {
    let written = bytes.is_empty()
        || write_in_two::<8>(bytes, word)
        || write_in_two::<4>(bytes, word)
        || write_in_two::<2>(bytes, word)
        || write_in_two::<1>(bytes, word);
    assert!(written, "at most 16 bytes");
}

/// [`read_short`] of `N` to `2N` bytes: their first `N` bytes and their last `N`, which are
/// the same where they overlap.
fn read_in_two<const N: usize>(bytes: &[u8]) -> Option<u128> {
    let len = bytes.len();
    match (bytes.first_chunk::<N>(), bytes.last_chunk::<N>()) {
        (Some(first), Some(last)) if len <= 2 * N => {
            Some(widen(first) | widen(last) << (8 * (len - N)))
        }
        _ => None,
    }
}

/// [`write_short`] of `N` to `2N` bytes.
fn write_in_two<const N: usize>(bytes: &mut [u8], word: u128) -> bool {
    let len = bytes.len();
    if !(N..=2 * N).contains(&len) {
        return false;
    }
    bytes[..N].copy_from_slice(&word.to_le_bytes()[..N]);
    bytes[len - N..].copy_from_slice(&(word >> (8 * (len - N))).to_le_bytes()[..N]);
    true
}

/// `N` bytes (at most 16) as a little-endian word.
fn widen<const N: usize>(bytes: &[u8; N]) -> u128 {
    let mut word = [0; 16];
    word[..N].copy_from_slice(bytes);
    u128::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_copies_copy_every_length_up_to_64_and_nothing_longer() {
        let src: Vec<u8> = (1..=70).collect();
        for len in 0..=70 {
            let mut dst = [0u8; 80];
            let copied = copy_short(&mut dst, &src[..len]);
            assert_eq!(copied, len <= 64, "{len}");
            let expected = if copied { len } else { 0 };
            assert_eq!(dst[..expected], src[..expected], "{len}");
            assert!(dst[expected..].iter().all(|&byte| byte == 0), "{len}");
        }
    }

    #[test]
    fn windows_append_exactly_the_bytes_wanted() {
        let bytes: Vec<u8> = (0..=200).collect();
        for (window, len) in [(200, 17), (200, 64), (200, 65), (64, 64), (30, 30), (0, 0)] {
            let mut out = vec![9u8; 3];
            extend_from_window::<64>(&mut out, &bytes[..window], len);
            assert_eq!(out[..3], [9, 9, 9]);
            assert_eq!(out[3..], bytes[..len], "{window} {len}");
        }
    }

    #[test]
    fn short_words_read_and_write_every_length_up_to_16_and_nothing_longer() {
        let src: Vec<u8> = (1..=20).collect();
        for len in 0..=20 {
            let word = read_short(&src[..len]);
            assert_eq!(word.is_some(), len <= 16, "{len}");
            let Some(word) = word else { continue };
            let mut expected = [0u8; 16];
            expected[..len].copy_from_slice(&src[..len]);
            assert_eq!(word.to_le_bytes(), expected, "{len}");
            // Bytes of the word past `len` are not written.
            let past = u128::MAX.checked_shl(8 * len as u32).unwrap_or(0);
            let mut dst = [0xffu8; 20];
            write_short(&mut dst[..len], word | past);
            assert_eq!(dst[..len], src[..len], "{len}");
            assert!(dst[len..].iter().all(|&byte| byte == 0xff), "{len}");
        }
    }
}
