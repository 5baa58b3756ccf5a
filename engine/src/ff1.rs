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
pub const LANES: usize = 8;
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
        let mut members = Vec::with_capacity(numerals.len());
        let mut lanes = Vec::with_capacity(numerals.len());
        for (index, (string, tweak)) in numerals.iter().zip(tweaks).enumerate() {
            match Lane::new(radix, string, tweak, direction) {
                Ok(lane) => {
                    lanes.push(lane);
                    members.push(index);
                }
                Err(error) => errors[index] = Some(error),
            }
        }
        for (lanes, members) in lanes.chunks_mut(LANES).zip(members.chunks(LANES)) {
            let tweaks: Vec<&[u8]> = members.iter().map(|&index| tweaks[index]).collect();
            self.rounds(lanes, &tweaks);
            for (lane, &index) in lanes.iter().zip(members) {
                lane.write(radix, numerals[index]);
            }
        }
        errors
    }

    /// The ten Feistel rounds of every lane, in lockstep.
    fn rounds(&self, lanes: &mut [Lane], tweaks: &[&[u8]]) {
        self.absorb_constant_prefix(lanes, tweaks);
        let mut blocks = [Block::default(); LANES];
        let blocks = &mut blocks[..lanes.len()];
        for step in 0..ROUNDS {
            let round = match lanes[0].direction {
                Direction::Encrypt => step,
                Direction::Decrypt => ROUNDS - 1 - step,
            };
            for (lane, block) in lanes.iter().zip(blocks.iter_mut()) {
                *block = lane.last_block(round);
            }
            self.aes.encrypt_blocks(blocks);
            for (lane, block) in lanes.iter_mut().zip(blocks.iter()) {
                lane.step(round, block);
            }
        }
    }

    /// Each lane's CBC-MAC over `P` and the blocks of `Q` that hold only the tweak and its
    /// padding: the same in all ten rounds, so absorbed once.
    fn absorb_constant_prefix(&self, lanes: &mut [Lane], tweaks: &[&[u8]]) {
        let most = lanes
            .iter()
            .map(|lane| lane.prefix_blocks)
            .max()
            .unwrap_or(0);
        let mut blocks = [Block::default(); LANES];
        for at in 0..most {
            let mut active = 0;
            let mut which = [0usize; LANES];
            for (lane_index, lane) in lanes.iter().enumerate() {
                if at < lane.prefix_blocks {
                    let input = lane.prefix_block(at, tweaks[lane_index]);
                    blocks[active] = xor(&lane.mac, &input);
                    which[active] = lane_index;
                    active += 1;
                }
            }
            self.aes.encrypt_blocks(&mut blocks[..active]);
            for (block, &lane_index) in blocks[..active].iter().zip(&which[..active]) {
                lanes[lane_index].mac = *block;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// One numeral string on its way through the rounds: its halves as integers.
struct Lane {
    /// `radix^u` and `radix^v`, the moduli of the even and odd rounds.
    modulus: [u128; 2],
    /// The halves: `A` and `B` of the standard.
    a: u128,
    b: u128,
    /// `u`, the length of the first half.
    u: usize,
    direction: Direction,
    /// `b` of the standard: bytes of `NUM(B)` in `Q`.
    num_bytes: usize,
    /// `d` of the standard: bytes of `S` taken as `y`.
    d: usize,
    /// Blocks of `P ‖ Q` before `Q`'s last, and the CBC-MAC state after them.
    prefix_blocks: usize,
    mac: Block,
    /// `Q`'s last block before `i` and `NUM(B)` are written in.
    last: Block,
    /// `P`, kept for the prefix.
    p: Block,
}

impl Lane {
    fn new(
        radix: Radix,
        string: &[u16],
        tweak: &[u8],
        direction: Direction,
    ) -> Result<Self, Ff1Error> {
        let radix = radix.get();
        let n = string.len();
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
        let t = tweak.len();
        let n32 = u32::try_from(n).map_err(|_| Ff1Error::TooLong)?;
        let t32 = u32::try_from(t).map_err(|_| Ff1Error::TooLong)?;
        let mut p = Block::default();
        p[..3].copy_from_slice(&[1, 2, 1]);
        p[3..6].copy_from_slice(&radix.to_be_bytes()[1..]);
        p[6] = 10;
        p[7] = (u % 256) as u8;
        p[8..12].copy_from_slice(&n32.to_be_bytes());
        p[12..16].copy_from_slice(&t32.to_be_bytes());
        // Q = T ‖ 0^((-t-b-1) mod 16) ‖ [i] ‖ [NUM(B)]^b: only its last block changes by round.
        let pad = (16 - (t + num_bytes + 1) % 16) % 16;
        let q_len = t + pad + 1 + num_bytes;
        let mut last = Block::default();
        let last_start = q_len - 16;
        for (at, byte) in last.iter_mut().enumerate().take(16 - 1 - num_bytes) {
            *byte = tweak.get(last_start + at).copied().unwrap_or(0);
        }
        let num = |digits: &[u16]| {
            digits.iter().fold(0u128, |acc, &digit| {
                acc * u128::from(radix) + u128::from(digit)
            })
        };
        let (first, second) = (num(&string[..u]), num(&string[u..]));
        // `b` always holds the half that feeds the round's PRF, `a` the one it changes: `B`
        // and `A` enciphering, `A` and `B` deciphering. Then both directions move the halves
        // alike.
        let (a, b) = match direction {
            Direction::Encrypt => (first, second),
            Direction::Decrypt => (second, first),
        };
        Ok(Lane {
            modulus: [modulus_u, modulus_v],
            a,
            b,
            u,
            direction,
            num_bytes,
            d,
            prefix_blocks: 1 + last_start / 16,
            mac: Block::default(),
            last,
            p,
        })
    }

    /// Block `at` of `P ‖ Q` before `Q`'s last.
    fn prefix_block(&self, at: usize, tweak: &[u8]) -> Block {
        if at == 0 {
            return self.p;
        }
        let mut block = Block::default();
        let start = (at - 1) * 16;
        for (offset, byte) in block.iter_mut().enumerate() {
            *byte = tweak.get(start + offset).copied().unwrap_or(0);
        }
        block
    }

    /// The CBC-MAC's input for `Q`'s last block in round `i`, chained with the prefix's state.
    fn last_block(&self, round: u8) -> Block {
        let mut block = self.last;
        block[15 - self.num_bytes] = round;
        block[16 - self.num_bytes..].copy_from_slice(&self.b.to_be_bytes()[16 - self.num_bytes..]);
        xor(&self.mac, &block)
    }

    /// Applies round `round`, whose PRF output is `r`.
    fn step(&mut self, round: u8, r: &Block) {
        let mut s = [0u8; 16];
        s[16 - self.d..].copy_from_slice(&r[..self.d]);
        let modulus = self.modulus[usize::from(round % 2)];
        let y = u128::from_be_bytes(s) % modulus;
        let c = match self.direction {
            Direction::Encrypt => (self.a + y) % modulus,
            Direction::Decrypt => (self.a + modulus - y) % modulus,
        };
        self.a = self.b;
        self.b = c;
    }

    /// Writes the halves back as numerals.
    fn write(&self, radix: Radix, string: &mut [u16]) {
        let radix = u128::from(radix.get());
        let (first, second) = match self.direction {
            Direction::Encrypt => (self.a, self.b),
            Direction::Decrypt => (self.b, self.a),
        };
        let (first_half, second_half) = string.split_at_mut(self.u);
        for (half, mut value) in [(first_half, first), (second_half, second)] {
            for digit in half.iter_mut().rev() {
                // Below the radix, at most 2^16: the cast keeps every bit.
                *digit = (value % radix) as u16;
                value /= radix;
            }
        }
    }
}

fn xor(a: &Block, b: &Block) -> Block {
    let mut out = *a;
    for (o, x) in out.iter_mut().zip(b.iter()) {
        *o ^= x;
    }
    out
}
