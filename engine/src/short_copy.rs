//! Copies of the few bytes of a value or a token, in pieces of a fixed length.
//!
//! A copy whose length is known only at run time compiles to a call to `memmove`, and for the
//! few dozen bytes of a value or a token the call costs more than the copy: three to five such
//! calls per value took a fifth of the deterministic mode's time (`perf`, 2026-12-03). A copy of
//! a fixed length compiles to a few vector moves in line. So:
//!
//! - [`extend_from_window`] appends the start of a slice that goes on past the bytes wanted: a
//!   fixed number of bytes are copied and the excess is dropped again;
//! - [`copy_short`] copies up to 32 bytes in two pieces of a fixed length that overlap where
//!   the bytes are shorter than both, for bytes with nothing readable after them.

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

/// Copies `src` to the start of `dst` and returns `true` if `src` is at most 32 bytes long;
/// else copies nothing and returns `false`.
///
/// # Panics
/// If `dst` is shorter than `src`.
pub fn copy_short(dst: &mut [u8], src: &[u8]) -> bool {
    src.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_copies_copy_every_length_up_to_32_and_nothing_longer() {
        let src: Vec<u8> = (1..=40).collect();
        for len in 0..=40 {
            let mut dst = [0u8; 48];
            let copied = copy_short(&mut dst, &src[..len]);
            assert_eq!(copied, len <= 32, "{len}");
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
}
