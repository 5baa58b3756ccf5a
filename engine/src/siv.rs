//! AES-SIV (RFC 5297) for batches of values: the same bytes as the `aes-siv` crate, which stays
//! the reference it is checked against (`tests/siv.rs`: RFC 5297's vectors and a differential
//! property test), with the work that depends only on the key or the headers done once.
//!
//! RFC 5297 in the terms of this module:
//!
//! - The key is two block-cipher keys: `K1` for S2V, `K2` for CTR (§2.6). Both key schedules are
//!   built once, in [`Siv::new`], with the CMAC subkeys of `K1` (RFC 4493 §2.3).
//! - S2V (§2.4) reads the headers, then the plaintext. Its state after the headers (`D`) is
//!   the same for every value of a batch, so it is computed once per batch: [`Siv::absorb`]
//!   (for a header that differs per value but is one block long, the randomized mode's nonce,
//!   [`Siv::absorb_each`]). [`Siv::seal`] and [`Siv::open`] take it from there.
//! - Values go through together: block `i` of the CMAC chain of every value of a batch is
//!   enciphered in one call, and so are all the CTR blocks (§2.5, §2.6), so the independent
//!   blocks overlap in the AES unit instead of waiting for each other.
//! - Tags are compared in constant time; a value whose tag does not match is wiped.
//! - Key material is wiped when a [`Siv`] is dropped: the CMAC subkeys here, the key schedules
//!   by the `aes` crate (its `zeroize` feature, which the workspace turns on). S2V's last
//!   strings are made in the caller's buffers and undone there, except a short value's, which
//!   is wiped after use; the caller's buffers and the CTR key stream of a batch are not (the
//!   values came in those buffers and leave in them).

use aes::cipher::consts::U16;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::short_copy;

/// One 128-bit block.
pub type Block = [u8; 16];

/// An AES-SIV key, ready: both key schedules and the CMAC subkeys. `C` is the block cipher
/// (`aes::Aes256` for `AEAD_AES_SIV_CMAC_512`, what the engine uses; `aes::Aes128` for the
/// RFC's own test vectors).
pub struct Siv<C> {
    mac: C,
    ctr: C,
    /// CMAC subkeys `K1'` and `K2'` of RFC 4493 (named so apart from RFC 5297's key halves).
    subkeys: [Block; 2],
    /// S2V's first step, `CMAC(K1, <zero>)`: a constant of the key.
    cmac_zero: Block,
}

impl<C> Drop for Siv<C> {
    fn drop(&mut self) {
        self.subkeys.zeroize();
        self.cmac_zero.zeroize();
    }
}

impl<C: BlockCipherEncrypt<BlockSize = U16> + KeyInit> Siv<C> {
    /// The key `K1 ‖ K2` (twice the cipher's key length), or `None` for another length.
    pub fn new(key: &[u8]) -> Option<Self> {
        let (k1, k2) = key.split_at_checked(key.len() / 2)?;
        let mac = C::new_from_slice(k1).ok()?;
        let ctr = C::new_from_slice(k2).ok()?;
        let mut siv = Siv {
            mac,
            ctr,
            subkeys: [[0; 16]; 2],
            cmac_zero: [0; 16],
        };
        let mut l = [0u8; 16];
        siv.encipher(&mut l);
        let mut first = dbl(&l);
        siv.subkeys = [first, dbl(&first)];
        l.zeroize();
        first.zeroize();
        siv.cmac_zero = siv.cmac(&[0; 16]);
        Some(siv)
    }

    /// S2V's state `D` after `headers` (RFC 5297 §2.4, the loop over `S1 .. Sn-1`).
    pub fn absorb(&self, headers: &[&[u8]]) -> Block {
        headers.iter().fold(self.cmac_zero, |state, header| {
            xor(&dbl(&state), &self.cmac(header))
        })
    }

    /// `state` after one more header per value, each exactly one block (the randomized mode's
    /// nonces): the CMACs of all of them enciphered in one call.
    pub fn absorb_each(&self, state: &Block, headers: &[Block]) -> Vec<Block> {
        let [last_complete, _] = &self.subkeys;
        let mut blocks: Vec<Block> = headers
            .iter()
            .map(|header| xor(header, last_complete))
            .collect();
        encipher_all(&self.mac, &mut blocks);
        let doubled = dbl(state);
        blocks.iter().map(|mac| xor(&doubled, mac)).collect()
    }

    /// Encrypts each of `values` in place, after the headers that left S2V in `states(i)`,
    /// and returns their tags (the synthetic IVs, RFC 5297 §2.6), in order.
    pub fn seal(&self, states: impl Fn(usize) -> Block, values: &mut [&mut [u8]]) -> Vec<Block> {
        let tags = self.s2v_last(&states, values);
        self.ctr(&tags, values);
        tags
    }

    /// Decrypts each of `values` in place with its tag, after the headers that left S2V in
    /// `states(i)` (RFC 5297 §2.7), and tells which are authentic. A value that is not is
    /// wiped (all zeros): no part of a forged plaintext leaves.
    pub fn open(
        &self,
        states: impl Fn(usize) -> Block,
        tags: &[Block],
        values: &mut [&mut [u8]],
    ) -> Vec<bool> {
        assert_eq!(tags.len(), values.len(), "one tag per value");
        self.ctr(tags, values);
        let expected = self.s2v_last(&states, values);
        expected
            .iter()
            .zip(tags)
            .zip(values.iter_mut())
            .map(|((expected, tag), value)| {
                // In constant time, a word at a time (byte-wise, `subtle` cost more than AES).
                let expected = u128::from_ne_bytes(*expected);
                let authentic = bool::from(expected.ct_eq(&u128::from_ne_bytes(*tag)));
                if !authentic {
                    value.zeroize();
                }
                authentic
            })
            .collect()
    }

    /// S2V's last string and final CMAC (§2.4): `T = Sn xorend D` for a value of a block or
    /// more, else `T = dbl(D) xor pad(Sn)`; the tag is `CMAC(K1, T)`. A long value's `T` is made
    /// in place, for the whole batch before any CMAC reads it, and undone after.
    fn s2v_last(&self, states: &impl Fn(usize) -> Block, values: &mut [&mut [u8]]) -> Vec<Block> {
        // Made at its size: growing would leave copies behind, unwiped.
        let short_values = values.iter().filter(|value| value.len() < 16).count();
        let mut short: Vec<Block> = Vec::with_capacity(short_values);
        for (index, value) in values.iter_mut().enumerate() {
            match value.last_chunk_mut::<16>() {
                Some(end) => *end = xor(end, &states(index)),
                None => short.push(xor(&dbl(&states(index)), &pad(value))),
            }
        }
        let mut shorts = short.iter();
        let last_strings: Vec<&[u8]> = values
            .iter()
            .map(|value| match value.len() {
                ..16 => shorts.next().expect("one T per short value").as_slice(),
                _ => &**value,
            })
            .collect();
        let tags = self.cmac_each(&last_strings);
        // The long values back as they were.
        for (index, value) in values.iter_mut().enumerate() {
            if let Some(end) = value.last_chunk_mut::<16>() {
                *end = xor(end, &states(index));
            }
        }
        // They held short values (when opening, those of forged tokens too). Wiped as bytes:
        // as blocks, `zeroize` writes them a byte at a time.
        short.as_flattened_mut().zeroize();
        tags
    }

    /// `CMAC(K1, m)` of each of `messages` (RFC 4493 §2.4). Block `i` of every message is
    /// enciphered in one call with the others' block `i`, so that the chains overlap in the
    /// AES unit instead of waiting for each other.
    fn cmac_each(&self, messages: &[&[u8]]) -> Vec<Block> {
        // The chains longest first, so that those still going in a round are the first ones
        // (messages of one length, as a batch's often are, are in that order already).
        let longest_first = |message: &&[u8]| std::cmp::Reverse(cmac_blocks(message));
        if messages.is_sorted_by_key(longest_first) {
            return self.cmac_longest_first(messages);
        }
        let mut order: Vec<usize> = (0..messages.len()).collect();
        order.sort_by_key(|&index| longest_first(&messages[index]));
        let sorted: Vec<&[u8]> = order.iter().map(|&index| messages[index]).collect();
        let mut macs = vec![[0u8; 16]; messages.len()];
        for (mac, index) in self.cmac_longest_first(&sorted).into_iter().zip(order) {
            macs[index] = mac;
        }
        macs
    }

    /// [`Siv::cmac_each`] of messages in order of their number of blocks, the most first.
    fn cmac_longest_first(&self, messages: &[&[u8]]) -> Vec<Block> {
        debug_assert!(messages.is_sorted_by_key(|message| std::cmp::Reverse(cmac_blocks(message))));
        let mut chains: Vec<Block> = Vec::with_capacity(messages.len());
        let mut going = messages.len();
        for round in 0.. {
            while going > 0 && cmac_blocks(messages[going - 1]) <= round {
                going -= 1;
            }
            if going == 0 {
                break;
            }
            if round == 0 {
                chains.extend(messages.iter().map(|message| self.block(message, 0)));
            } else {
                for (chain, message) in chains[..going].iter_mut().zip(messages) {
                    *chain = xor(chain, &self.block(message, round));
                }
            }
            encipher_all(&self.mac, &mut chains[..going]);
        }
        chains
    }

    /// Block `round` of `message` for CMAC: a whole block with more after it, else the
    /// message's last block. In line: called per value and round, it is a few instructions.
    #[inline(always)]
    fn block(&self, message: &[u8], round: usize) -> Block {
        match message[16 * round..].first_chunk::<16>() {
            Some(block) if message.len() > 16 * (round + 1) => *block,
            _ => self.last_block(message),
        }
    }

    /// One CMAC, of a message of any length.
    fn cmac(&self, message: &[u8]) -> Block {
        self.cmac_each(&[message])[0]
    }

    /// The last block of `message` for CMAC (RFC 4493 §2.4 step 4): complete, xored with
    /// `K1'`; else padded and xored with `K2'`.
    fn last_block(&self, message: &[u8]) -> Block {
        let [complete, partial] = &self.subkeys;
        let rest = match message.len() % 16 {
            0 if !message.is_empty() => 16,
            rest => rest,
        };
        match message.last_chunk::<16>() {
            Some(block) if rest == 16 => xor(block, complete),
            // The bytes that are left, read with the block they end: copying them into a
            // block one by one and reading it as a whole makes the CPU wait for the copies.
            Some(window) => {
                let bytes = u128::from_be_bytes(*window) << (8 * (16 - rest));
                let padded = bytes | 0x80 << (8 * (15 - rest));
                xor(&padded.to_be_bytes(), partial)
            }
            None => xor(&pad(message), partial),
        }
    }

    /// CTR mode (§2.5, §2.6) in place, from `Q = V` with bits 31 and 63 cleared, counting up as
    /// a 128-bit big-endian integer; the key stream of every value in one call.
    fn ctr(&self, tags: &[Block], values: &mut [&mut [u8]]) {
        /// `Q` is the tag with bits 63 and 31 cleared: this mask, as bytes.
        const CLEAR: u128 = u128::from_ne_bytes((!(1u128 << 63 | 1 << 31)).to_be_bytes());
        let blocks: usize = values.iter().map(|value| value.len().div_ceil(16)).sum();
        let mut stream: Vec<Block> = Vec::with_capacity(blocks);
        for (tag, value) in tags.iter().zip(values.iter()) {
            let q = (u128::from_ne_bytes(*tag) & CLEAR).to_ne_bytes();
            // With bit 31 cleared, counting up to 2^31 blocks (32 GiB) never carries out of
            // the last 32 bits, so only they are counted (why RFC 5297 clears it, §2.5).
            let low = u32::from_be_bytes([q[12], q[13], q[14], q[15]]);
            let count = u32::try_from(value.len().div_ceil(16))
                .ok()
                .filter(|&count| count <= 1 << 31)
                .expect("values of at most 2^31 blocks (32 GiB)");
            for i in 0..count {
                let mut counter = [0; 16];
                counter[..12].copy_from_slice(&q[..12]);
                counter[12..].copy_from_slice(&(low + i).to_be_bytes());
                stream.push(counter);
            }
        }
        encipher_all(&self.ctr, &mut stream);
        let mut keys = stream.as_slice();
        for value in values.iter_mut() {
            let (of_value, rest) = keys.split_at(value.len().div_ceil(16));
            xor_key_stream(value, of_value);
            keys = rest;
        }
    }

    fn encipher(&self, block: &mut Block) {
        encipher_all(&self.mac, std::slice::from_mut(block));
    }
}

/// How many blocks CMAC enciphers for `message`: the empty message is one (padded) block.
fn cmac_blocks(message: &[u8]) -> usize {
    message.len().div_ceil(16).max(1)
}

/// Enciphers `blocks` in place, in one call: the `aes` crate overlaps independent blocks (AES-NI
/// eight at a time; VAES, where the CPU has it, four per instruction).
fn encipher_all<C: BlockCipherEncrypt<BlockSize = U16>>(cipher: &C, blocks: &mut [Block]) {
    cipher.encrypt_blocks(Array::cast_slice_from_core_mut(blocks));
}

/// Doubling in GF(2^128) (RFC 5297 §2.3), in constant time: a shift left of the block as a
/// big-endian number, and `0x87` folded back in when the bit shifted out is set.
#[inline]
fn dbl(block: &Block) -> Block {
    let x = u128::from_be_bytes(*block);
    let carry = x >> 127;
    ((x << 1) ^ (0u128.wrapping_sub(carry) & 0x87)).to_be_bytes()
}

/// Xors `value` with its CTR key stream, `keys`: one key block per block of the value, the
/// last one for a partial block too.
///
/// A partial block after whole ones is xored in the value's last 16 bytes (the block it ends,
/// see `last_block`), which overlap the last whole block. Both are read before either is
/// written: reading bytes of which a part was just written makes the CPU wait for the write
/// (a failed store-to-load forwarding), and that wait was a tenth of the deterministic mode's
/// time. A value shorter than a block is xored as one word (see `short_copy`).
#[inline]
fn xor_key_stream(value: &mut [u8], keys: &[Block]) {
    let (whole, rest) = (value.len() / 16, value.len() % 16);
    // The whole blocks, but for the last one if a partial block follows it.
    let alone = if rest > 0 {
        whole.saturating_sub(1)
    } else {
        whole
    };
    let (blocks, _) = value.as_chunks_mut::<16>();
    for (block, key) in blocks[..alone].iter_mut().zip(keys) {
        *block = xor(block, key);
    }
    if rest == 0 {
        return;
    }
    let key = &keys[whole];
    if whole == 0 {
        let short = short_copy::read_short(value).expect("a value shorter than a block");
        short_copy::write_short(value, short ^ u128::from_le_bytes(*key));
        return;
    }
    let at = 16 * (whole - 1);
    let block = *value[at..].first_chunk::<16>().expect("a whole block");
    let end = value.last_chunk_mut::<16>().expect("a block or more");
    // The key's first `rest` bytes where the last 16 bytes' last `rest` bytes are; their
    // other bytes are the last whole block's, written after them.
    let key = u128::from_le_bytes(*key) << (8 * (16 - rest));
    *end = (u128::from_le_bytes(*end) ^ key).to_le_bytes();
    *value[at..].first_chunk_mut::<16>().expect("a whole block") = xor(&block, &keys[whole - 1]);
}

/// `x ‖ 10*` to one block (`x` shorter than a block).
fn pad(x: &[u8]) -> Block {
    let word = short_copy::read_short(x).expect("shorter than a block");
    (word | 0x80 << (8 * x.len())).to_le_bytes()
}

/// `a ⊕ b`, as one 128-bit word.
#[inline]
fn xor(a: &Block, b: &Block) -> Block {
    (u128::from_ne_bytes(*a) ^ u128::from_ne_bytes(*b)).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_follows_the_rfc() {
        // RFC 4493 §4: L = AES-128(key, 0) and its subkeys K1 = dbl(L), K2 = dbl(K1).
        let l = hex_block("7df76b0c1ab899b33e42f047b91b546f");
        let k1 = dbl(&l);
        assert_eq!(k1, hex_block("fbeed618357133667c85e08f7236a8de"));
        assert_eq!(dbl(&k1), hex_block("f7ddac306ae266ccf90bc11ee46d513b"));
    }

    fn hex_block(text: &str) -> Block {
        let mut block = [0u8; 16];
        hex::decode_to_slice(text, &mut block).expect("hex");
        block
    }
}
