//! FF1 (NIST SP 800-38G, format-preserving encryption) with AES-256, for numeral strings whose
//! halves each fit in 96 bits.
//!
//! That bound is what keeps FF1 cheap here: the Feistel halves are `u128` integers, so no round
//! converts numerals or allocates, and each round's `S` is the first block of its PRF output
//! (`d <= 16` bytes), so a round costs one AES call. Rounds of up to [`LANES`] strings run in
//! lockstep, so their AES calls are pipelined. It bounds a string to 56 decimal digits, 38 VIN
//! characters or 32 of 62 letters and digits, and [`Ff1`] refuses longer ones
//! ([`Ff1Error::TooLong`]).
//!
//! The `fpe` crate is the reference this implementation is checked against (`engine/tests/`),
//! with the standard's sample vectors.

use aes::Aes256;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};

/// The smallest `radix^length` accepted: the minimum of the second public draft of SP 800-38G
/// Rev. 1 (2025).
pub const MIN_DOMAIN: u128 = 1_000_000;
/// The largest radix the standard allows.
pub const MAX_RADIX: u32 = 1 << 16;
/// The largest `radix^ceil(length / 2)` accepted: a half of at most 96 bits.
const MAX_HALF: u128 = 1 << 96;
/// Strings encrypted in lockstep.
pub const LANES: usize = 64;
/// Feistel rounds of FF1.
const ROUNDS: u8 = 10;

type Block = Array<u8, aes::cipher::consts::U16>;

/// Why a numeral string cannot be enciphered: never because of the numerals' values, which the
/// caller checks against the radix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ff1Error {
    /// `radix^length` below [`MIN_DOMAIN`].
    #[error("too few possible values: radix^length must be at least 1,000,000")]
    TooShort,
    /// A half of the string above 96 bits.
    #[error("too long for format-preserving encryption")]
    TooLong,
}

/// A radix FF1 takes: 2 to 65,536.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Radix(u32);

/// A radix outside `2..=65536`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the radix must be from 2 to 65536")]
pub struct InvalidRadix;

impl Radix {
    /// `radix`, checked.
    pub fn new(radix: u32) -> Result<Self, InvalidRadix> {
        match (2..=MAX_RADIX).contains(&radix) {
            true => Ok(Radix(radix)),
            false => Err(InvalidRadix),
        }
    }

    /// The radix.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The shortest numeral string [`Ff1`] accepts: `radix^length` at least a million.
    pub fn min_len(self) -> usize {
        let mut len = 0;
        let mut domain = 1u128;
        while domain < MIN_DOMAIN {
            domain *= u128::from(self.0);
            len += 1;
        }
        len.max(2)
    }

    /// The longest numeral string [`Ff1`] accepts: each half at most 96 bits.
    pub fn max_len(self) -> usize {
        let mut half = 0;
        let mut domain = 1u128;
        while let Some(next) = domain
            .checked_mul(u128::from(self.0))
            .filter(|&d| d <= MAX_HALF)
        {
            domain = next;
            half += 1;
        }
        2 * half
    }
}

/// An FF1 key: its AES-256 key schedule, built once.
pub struct Ff1 {
    aes: Aes256,
}

impl Ff1 {
    /// The FF1 cipher of a 256-bit key.
    pub fn new(key: &[u8; 32]) -> Self {
        Ff1 {
            aes: Aes256::new(key.into()),
        }
    }

    /// Enciphers each numeral string in place, each with its tweak; `None` for a string
    /// enciphered, the error of one that cannot be. `numerals` and `tweaks` pair up.
    pub fn encrypt(
        &self,
        radix: Radix,
        numerals: &mut [&mut [u16]],
        tweaks: &[&[u8]],
    ) -> Vec<Option<Ff1Error>> {
        self.run(radix, numerals, tweaks, Direction::Encrypt)
    }

    /// Deciphers each numeral string in place: the inverse of [`Ff1::encrypt`].
    pub fn decrypt(
        &self,
        radix: Radix,
        numerals: &mut [&mut [u16]],
        tweaks: &[&[u8]],
    ) -> Vec<Option<Ff1Error>> {
        self.run(radix, numerals, tweaks, Direction::Decrypt)
    }

    fn run(
        &self,
        radix: Radix,
        numerals: &mut [&mut [u16]],
        tweaks: &[&[u8]],
        direction: Direction,
    ) -> Vec<Option<Ff1Error>> {
        let mut errors = vec![None; numerals.len()];
        let divisor = Divisor::new(radix);
        // Lanes go through the rounds LANES at a time, so no batch-sized list of them is made.
        let mut lanes = Vec::with_capacity(LANES);
        let mut members = Vec::with_capacity(LANES);
        let mut lane_tweaks = Vec::with_capacity(LANES);
        // Strings of a batch mostly share their length and their tweak's: their shape is made
        // once for a run of them.
        let mut shape: Option<Shape> = None;
        for index in 0..numerals.len() {
            let (string, tweak) = (&*numerals[index], tweaks[index]);
            let (n, t) = (string.len(), tweak.len());
            let current = match shape {
                Some(known) if known.n == n && known.t == t => Ok(known),
                _ => Shape::new(radix, n, t, &self.aes),
            };
            match current {
                Ok(current) => {
                    shape = Some(current);
                    lanes.push(Lane::new(current, radix, string, tweak, direction));
                    members.push(index);
                    lane_tweaks.push(tweak);
                }
                Err(error) => errors[index] = Some(error),
            }
            if lanes.len() == LANES || (index + 1 == numerals.len() && !lanes.is_empty()) {
                self.rounds(&mut lanes, &lane_tweaks, direction);
                for (lane, &member) in lanes.iter().zip(&members) {
                    lane.write(&divisor, direction, numerals[member]);
                }
                lanes.clear();
                members.clear();
                lane_tweaks.clear();
            }
        }
        errors
    }

    /// The ten Feistel rounds of every lane, in lockstep.
    fn rounds(&self, lanes: &mut [Lane], tweaks: &[&[u8]], direction: Direction) {
        self.absorb_tweak_blocks(lanes, tweaks);
        let mut blocks = [Block::default(); LANES];
        let blocks = &mut blocks[..lanes.len()];
        for step in 0..ROUNDS {
            let round = match direction {
                Direction::Encrypt => step,
                Direction::Decrypt => ROUNDS - 1 - step,
            };
            for (lane, block) in lanes.iter().zip(blocks.iter_mut()) {
                *block = lane.last_block();
            }
            self.aes.encrypt_blocks(blocks);
            for (lane, block) in lanes.iter_mut().zip(blocks.iter()) {
                lane.step(round, block, direction);
            }
        }
    }

    /// Chains each lane's CBC-MAC through the blocks of `Q` before its last, which hold only
    /// the tweak and its padding: the same in all ten rounds, so absorbed once.
    fn absorb_tweak_blocks(&self, lanes: &mut [Lane], tweaks: &[&[u8]]) {
        let most = lanes
            .iter()
            .map(|lane| lane.shape.tweak_blocks)
            .max()
            .unwrap_or(0);
        let mut blocks = [Block::default(); LANES];
        for at in 0..most {
            let mut active = 0;
            let mut which = [0usize; LANES];
            for (lane_index, lane) in lanes.iter().enumerate() {
                if at < lane.shape.tweak_blocks {
                    let mut input = [0u8; 16];
                    for (offset, byte) in input.iter_mut().enumerate() {
                        *byte = tweaks[lane_index]
                            .get(at * 16 + offset)
                            .copied()
                            .unwrap_or(0);
                    }
                    blocks[active] =
                        Block::from((u128::from_be_bytes(input) ^ lane.mac).to_be_bytes());
                    which[active] = lane_index;
                    active += 1;
                }
            }
            self.aes.encrypt_blocks(&mut blocks[..active]);
            for (block, &lane_index) in blocks[..active].iter().zip(&which[..active]) {
                lanes[lane_index].mac = u128::from_be_bytes((*block).into());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// What the strings of one length `n` with tweaks of one length `t` share.
#[derive(Clone, Copy)]
struct Shape {
    n: usize,
    t: usize,
    /// `u`, the length of the first half.
    u: usize,
    /// `radix^u` and `radix^v`, the moduli of the even and odd rounds.
    modulus: [Modulus; 2],
    /// `b` of the standard: bytes of `NUM(B)` in `Q`.
    num_bytes: usize,
    /// `d` of the standard: bytes of `S` taken as `y`.
    d: usize,
    /// Blocks of `Q` before its last: tweak and padding only.
    tweak_blocks: usize,
    /// The CBC-MAC state after `P` (which depends on nothing else), as a big-endian integer.
    mac_after_p: u128,
    /// Round `i` in `Q`'s last block: `i` times this (its byte is the one before `NUM(B)`).
    round_unit: u128,
}

impl Shape {
    fn new(radix: Radix, n: usize, t: usize, aes: &Aes256) -> Result<Self, Ff1Error> {
        let radix = radix.get();
        let (u, v) = (n / 2, n - n / 2);
        let power =
            |len: usize| (0..len).try_fold(1u128, |acc, _| acc.checked_mul(u128::from(radix)));
        let modulus_v = power(v)
            .filter(|&m| m <= MAX_HALF)
            .ok_or(Ff1Error::TooLong)?;
        let modulus_u = power(u).ok_or(Ff1Error::TooLong)?;
        // A product past u128 is far above the minimum.
        if n < 2
            || modulus_u
                .checked_mul(modulus_v)
                .is_some_and(|all| all < MIN_DOMAIN)
        {
            return Err(Ff1Error::TooShort);
        }
        // b = ceil(ceil(v * log2(radix)) / 8), where ceil(log2(x)) is the bit length of x - 1.
        let bits = 128 - (modulus_v - 1).leading_zeros() as usize;
        let num_bytes = bits.div_ceil(8);
        let d = 4 * num_bytes.div_ceil(4) + 4;
        let n32 = u32::try_from(n).map_err(|_| Ff1Error::TooLong)?;
        let t32 = u32::try_from(t).map_err(|_| Ff1Error::TooLong)?;
        let mut p = Block::default();
        p[..3].copy_from_slice(&[1, 2, 1]);
        p[3..6].copy_from_slice(&radix.to_be_bytes()[1..]);
        p[6] = 10;
        p[7] = (u % 256) as u8;
        p[8..12].copy_from_slice(&n32.to_be_bytes());
        p[12..16].copy_from_slice(&t32.to_be_bytes());
        aes.encrypt_block(&mut p);
        // Q = T ‖ 0^((-t-b-1) mod 16) ‖ [i] ‖ [NUM(B)]^b: only its last block changes by round.
        let q_len = (t + 1 + num_bytes).next_multiple_of(16);
        Ok(Shape {
            n,
            t,
            u,
            modulus: [Modulus::new(modulus_u), Modulus::new(modulus_v)],
            num_bytes,
            d,
            tweak_blocks: q_len / 16 - 1,
            mac_after_p: u128::from_be_bytes(p.into()),
            round_unit: 1 << (8 * num_bytes),
        })
    }
}

/// One numeral string on its way through the rounds: its halves as integers.
struct Lane {
    shape: Shape,
    /// The half the round changes, and the one that feeds the round's PRF: `A` and `B`
    /// enciphering, `B` and `A` deciphering. Then both directions move the halves alike.
    a: u128,
    b: u128,
    /// The CBC-MAC state before `Q`'s last block, and that block with the next round's `i`
    /// but before `NUM(B)` is added in, as big-endian integers: the round's block is then made
    /// by arithmetic, not by byte copies (whose stalls were a third of a round's time).
    mac: u128,
    last: u128,
}

impl Lane {
    fn new(shape: Shape, radix: Radix, string: &[u16], tweak: &[u8], direction: Direction) -> Self {
        let radix = radix.get();
        let [first_modulus, second_modulus] = &shape.modulus;
        let first = num(radix, &string[..shape.u], first_modulus);
        let second = num(radix, &string[shape.u..], second_modulus);
        let (a, b) = match direction {
            Direction::Encrypt => (first, second),
            Direction::Decrypt => (second, first),
        };
        // The tweak's bytes that fall in `Q`'s last block, before its padding.
        let last_start = shape.tweak_blocks * 16;
        let mut last = [0u8; 16];
        for (at, byte) in last.iter_mut().enumerate().take(16 - 1 - shape.num_bytes) {
            *byte = tweak.get(last_start + at).copied().unwrap_or(0);
        }
        let first_round = match direction {
            Direction::Encrypt => 0,
            Direction::Decrypt => u128::from(ROUNDS - 1) * shape.round_unit,
        };
        Lane {
            shape,
            a,
            b,
            mac: shape.mac_after_p,
            last: u128::from_be_bytes(last) | first_round,
        }
    }

    /// The CBC-MAC's input for `Q`'s last block in this round, chained with the prefix's state.
    fn last_block(&self) -> Block {
        // `NUM(B)` fills the last `b` bytes (it is below `radix^v <= 2^(8b)`).
        Block::from(((self.last | self.b) ^ self.mac).to_be_bytes())
    }

    /// Applies round `round`, whose PRF output is `r`.
    fn step(&mut self, round: u8, r: &Block, direction: Direction) {
        // `y`: the first `d` bytes of `R` (`d` is 8, 12 or 16).
        let y = u128::from_be_bytes((*r).into()) >> (8 * (16 - self.shape.d));
        let modulus = &self.shape.modulus[usize::from(round % 2)];
        let y = modulus.reduce(y);
        // `a` and `y` are below the modulus, at most 2^96: no sum overflows.
        let m = modulus.value;
        let c = match direction {
            Direction::Encrypt => self.a + y,
            Direction::Decrypt => self.a + m - y,
        };
        self.a = self.b;
        self.b = c.checked_sub(m).unwrap_or(c);
        // The next round's `i` (below 10, so its byte never carries; the wrap after deciphering
        // round 0 is never used).
        self.last = match direction {
            Direction::Encrypt => self.last + self.shape.round_unit,
            Direction::Decrypt => self.last.wrapping_sub(self.shape.round_unit),
        };
    }

    /// Writes the halves back as numerals.
    fn write(&self, divisor: &Divisor, direction: Direction, string: &mut [u16]) {
        let (first, second) = match direction {
            Direction::Encrypt => (self.a, self.b),
            Direction::Decrypt => (self.b, self.a),
        };
        let (first_half, second_half) = string.split_at_mut(self.shape.u);
        for (half, mut value) in [(first_half, first), (second_half, second)] {
            for digit in half.iter_mut().rev() {
                let (quotient, remainder) = divisor.div_rem(value);
                // Below the radix, at most 2^16: the cast keeps every bit.
                *digit = remainder as u16;
                value = quotient;
            }
        }
    }
}

/// `NUM_radix(digits)` of a half whose modulus is `radix^digits.len()`: in 64-bit arithmetic
/// when the modulus allows it (a half of up to 12 VIN characters), as most halves do.
fn num(radix: u32, digits: &[u16], modulus: &Modulus) -> u128 {
    // Every partial number is below `radix^k <= modulus`.
    match modulus.value <= 1 << 64 {
        true => u128::from(digits.iter().fold(0u64, |acc, &digit| {
            acc * u64::from(radix) + u64::from(digit)
        })),
        false => digits.iter().fold(0u128, |acc, &digit| {
            acc * u128::from(radix) + u128::from(digit)
        }),
    }
}

/// A modulus with its Barrett reciprocal, so that reducing by it costs a few multiplications
/// instead of a 128-bit division (which was most of a round's time).
#[derive(Clone, Copy)]
struct Modulus {
    value: u128,
    /// `floor((2^128 - 1) / value)`.
    reciprocal: u128,
    /// For a value from 2^32 to 2^63 (a half of 7 to 12 VIN characters): `floor(2^96 / value)`,
    /// which reduces a `y` below 2^96 with three 64-bit multiplications instead of seven. Else 0.
    narrow: u64,
}

impl Modulus {
    fn new(value: u128) -> Self {
        let narrow = match value > 1 << 32 && value < 1 << 63 {
            // Below 2^64, as the value is above 2^32.
            true => ((1u128 << 96) / value) as u64,
            false => 0,
        };
        Modulus {
            value,
            reciprocal: u128::MAX / value,
            narrow,
        }
    }

    /// `y mod value`.
    fn reduce(&self, y: u128) -> u128 {
        if self.narrow != 0 && y < 1 << 96 {
            return self.reduce_narrow(y);
        }
        // The estimate `floor(y * reciprocal / 2^128)` is at most 2 below `floor(y / value)`,
        // so the remainder is below 3 values: at most 3 * 2^96, no overflow.
        let estimate = mul_high(y, self.reciprocal);
        let mut remainder = y.wrapping_sub(estimate.wrapping_mul(self.value));
        while remainder >= self.value {
            remainder -= self.value;
        }
        remainder
    }

    /// `y mod value` for `y` below 2^96 and a `narrow` reciprocal.
    fn reduce_narrow(&self, y: u128) -> u128 {
        let (high, low) = ((y >> 64) as u64, y as u64);
        let reciprocal = u128::from(self.narrow);
        // `floor(y * narrow / 2^96)`, exactly, from the two halves' products (the high half is
        // below 2^32): the quotient or one below it, as `narrow` is at most 1 below
        // `2^96 / value`, so the estimate is above `y / value - 1`.
        let estimate =
            ((u128::from(high) * reciprocal + ((u128::from(low) * reciprocal) >> 64)) >> 32) as u64;
        // The remainder is below 2 values, below 2^64: the low halves suffice.
        let value = self.value as u64;
        let remainder = low.wrapping_sub(estimate.wrapping_mul(value));
        // No branch: which way it goes is as random as the remainder.
        let corrected = remainder.wrapping_sub(value);
        u128::from(if remainder >= value {
            corrected
        } else {
            remainder
        })
    }
}

/// Division by a radix with a multiplication (a 128-bit division per numeral was a seventh of
/// the mode's time).
struct Divisor {
    radix: u64,
    /// `floor((2^64 - 1) / radix) + 1`: at least `2^64 / radix`, and at most 1 above it.
    magic: u64,
}

impl Divisor {
    fn new(radix: Radix) -> Self {
        let radix = u64::from(radix.get());
        Divisor {
            radix,
            magic: u64::MAX / radix + 1,
        }
    }

    /// `(value / radix, value % radix)`.
    fn div_rem(&self, value: u128) -> (u128, u64) {
        let Ok(small) = u64::try_from(value) else {
            let radix = u128::from(self.radix);
            return (value / radix, (value % radix) as u64);
        };
        // The estimate is the quotient or one above it: `magic` exceeds 2^64 / radix by at most
        // 1, so the product exceeds small / radix by at most small / 2^64 < 1.
        let estimate = ((u128::from(small) * u128::from(self.magic)) >> 64) as u64;
        // From -radix to radix - 1, wrapped: a "remainder" of radix or more is negative.
        let remainder = small.wrapping_sub(estimate.wrapping_mul(self.radix));
        match remainder < self.radix {
            true => (u128::from(estimate), remainder),
            false => (u128::from(estimate - 1), remainder.wrapping_add(self.radix)),
        }
    }
}

/// The high 128 bits of the 256-bit product `a * b`.
fn mul_high(a: u128, b: u128) -> u128 {
    let (a0, a1) = (a as u64 as u128, a >> 64);
    let (b0, b1) = (b as u64 as u128, b >> 64);
    let (low, cross_a, cross_b, high) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let middle = (low >> 64) + (cross_a as u64 as u128) + (cross_b as u64 as u128);
    high + (cross_a >> 64) + (cross_b >> 64) + (middle >> 64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Divisor, MAX_HALF, Modulus, Radix};

    const EDGES: [u128; 6] = [
        0,
        1,
        u64::MAX as u128 - 1,
        u64::MAX as u128,
        1 << 64,
        MAX_HALF,
    ];

    #[test]
    fn division_by_multiplication_is_exact_at_the_edges() {
        for radix in [2, 3, 10, 33, 36, 62, 255, 256, 65535, 65536] {
            let divisor = Divisor::new(Radix::new(radix).expect("valid"));
            let r = u128::from(radix);
            for value in EDGES.into_iter().chain(EDGES.map(|e| e.saturating_sub(r))) {
                let (q, m) = divisor.div_rem(value);
                assert_eq!(
                    (q, u128::from(m)),
                    (value / r, value % r),
                    "{value} / {radix}"
                );
            }
        }
    }

    #[test]
    fn the_narrow_reduction_is_exact_at_its_edges() {
        let edges = [
            (1 << 32) + 1,
            33u128.pow(7),
            33u128.pow(8),
            33u128.pow(9),
            (1 << 63) - 1,
        ];
        for modulus in edges {
            let reduced = Modulus::new(modulus);
            assert_ne!(reduced.narrow, 0, "{modulus} takes the narrow path");
            for y in [
                0,
                modulus - 1,
                modulus,
                u64::MAX as u128,
                (1 << 96) - 1,
                (1 << 96) - modulus,
            ] {
                assert_eq!(reduced.reduce(y), y % modulus, "{y} mod {modulus}");
            }
        }
    }

    proptest! {
        #[test]
        fn barrett_reduction_and_division_match_the_operators(
            y in any::<u128>(),
            modulus in 2..=MAX_HALF,
            value in 0..=MAX_HALF,
            radix in 2u32..=65536,
        ) {
            prop_assert_eq!(Modulus::new(modulus).reduce(y), y % modulus);
            // The 64-bit path, for moduli where it applies (of every bit length from 33 to 63)
            // and `y` below 2^96.
            let bits = 33 + (radix % 31);
            let narrow = (modulus % (1 << (bits - 1))) | (1 << (bits - 1)) | 1;
            let small_y = y >> 32;
            prop_assert_eq!(Modulus::new(narrow).reduce(small_y), small_y % narrow);
            let (q, m) = Divisor::new(Radix::new(radix).expect("valid")).div_rem(value);
            prop_assert_eq!((q, u128::from(m)), (value / u128::from(radix), value % u128::from(radix)));
        }
    }
}
