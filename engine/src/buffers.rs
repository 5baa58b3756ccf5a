//! The buffers a batch is sealed and opened in: one allocation for all of its values, and
//! slices of it for each.

use std::ops::Range;

use crate::short_copy;

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

    pub(crate) fn len(&self) -> usize {
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

/// The buffer a batch's tokens are opened in: their payloads, decrypted in place into their
/// values, then [`short_copy::VALUE_WINDOW`] zeros, so that every value, the last one too, is
/// copied out in line (a few word-sized moves instead of a call to `memmove`). Its length is
/// fixed once made, which is what keeps the window there.
pub(crate) struct OpenedBuffer(Vec<u8>);

impl OpenedBuffer {
    /// `payloads` with the window after them (`token::decode_each` left room for it, so this
    /// does not reallocate).
    pub(crate) fn new(mut payloads: Vec<u8>) -> Self {
        payloads.extend_from_slice(&[0; short_copy::VALUE_WINDOW]);
        OpenedBuffer(payloads)
    }

    /// The bytes, the window included.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, to decrypt in place: a slice, which cannot grow.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Appends the value at `range` to `out`.
    pub(crate) fn copy_value(&self, range: Range<usize>, out: &mut Vec<u8>) {
        short_copy::extend_from_window::<{ short_copy::VALUE_WINDOW }>(
            out,
            &self.0[range.start..],
            range.len(),
        );
    }
}
