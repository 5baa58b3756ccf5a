//! The formats of format-preserving domains: which characters a value's pseudonym is written
//! in, and what becomes of the others.
//!
//! A value is read as the numerals of its characters that are in the [`Alphabet`]; those are
//! enciphered with FF1 ([`crate::ff1`]) and written back in place. Characters outside it are
//! kept where they are ([`Outside::Keep`], like a phone number's dashes) or make the value fail
//! ([`Outside::Refuse`]).
//!
//! The FF1 tweak binds the domain and the kept characters: `domain ‖ 0x00`, then for each kept
//! character its position (in characters, `u32` big-endian) and its UTF-8 bytes. So a value has
//! different pseudonyms in two domains, and `555-1234` and `5551-234` are enciphered apart.

use std::fmt;
use std::ops::Range;

use crate::ff1;

/// The characters pseudonyms of a format are written in, each a numeral: its position.
#[derive(Clone, PartialEq, Eq)]
pub struct Alphabet {
    characters: Vec<char>,
    radix: ff1::Radix,
    /// Numeral of each ASCII character in the alphabet. (Every `u16` is a numeral of a
    /// 65,536-character alphabet, so none can stand for "not in it".)
    ascii: [Option<u16>; 128],
    /// Numerals of the other characters, sorted by character.
    others: Vec<(char, u16)>,
    /// The characters as bytes, when all are ASCII: ASCII values then take a byte path.
    ascii_characters: Option<Vec<u8>>,
}

/// The alphabets with names: `digits`, `alnum`, `alnum-upper`, `alnum-lower`, `vin`.
pub const NAMED: [(&str, &str); 5] = [
    ("digits", "0123456789"),
    (
        "alnum",
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    ),
    ("alnum-upper", "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("alnum-lower", "0123456789abcdefghijklmnopqrstuvwxyz"),
    // A VIN's characters (ISO 3779): no I, O or Q.
    ("vin", "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"),
];

/// Why a format cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// An alphabet name that is none of [`NAMED`].
    #[error("unknown alphabet; the named ones are digits, alnum, alnum-upper, alnum-lower, vin")]
    UnknownAlphabet,
    /// A custom alphabet with a character twice.
    #[error("the characters of an alphabet must be distinct")]
    Repeated,
    /// A custom alphabet of fewer than 2 or more than 65,536 characters.
    #[error("an alphabet has 2 to 65536 characters")]
    Size,
    /// Both a named alphabet and characters, or neither.
    #[error("give either alphabet (a name) or characters (a custom alphabet), not both")]
    AlphabetOrCharacters,
}

impl Alphabet {
    /// A named alphabet (see [`NAMED`]).
    pub fn named(name: &str) -> Result<Self, FormatError> {
        let (_, characters) = NAMED
            .iter()
            .find(|(known, _)| *known == name)
            .ok_or(FormatError::UnknownAlphabet)?;
        Alphabet::custom(characters)
    }

    /// An alphabet of these distinct characters, numbered in their order.
    pub fn custom(characters: &str) -> Result<Self, FormatError> {
        let characters: Vec<char> = characters.chars().collect();
        let radix = u32::try_from(characters.len())
            .ok()
            .and_then(|len| ff1::Radix::new(len).ok())
            .ok_or(FormatError::Size)?;
        let mut ascii = [None; 128];
        let mut others = Vec::new();
        for (numeral, &c) in characters.iter().enumerate() {
            // At most 65,536 characters: numerals fit in 16 bits.
            let numeral = numeral as u16;
            match usize::try_from(u32::from(c)).ok().filter(|&i| i < 128) {
                Some(i) if ascii[i].is_some() => return Err(FormatError::Repeated),
                Some(i) => ascii[i] = Some(numeral),
                None => others.push((c, numeral)),
            }
        }
        others.sort_unstable();
        if others.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(FormatError::Repeated);
        }
        let ascii_characters = characters
            .iter()
            .map(|&c| u8::try_from(c).ok().filter(u8::is_ascii))
            .collect();
        Ok(Alphabet {
            characters,
            radix,
            ascii,
            others,
            ascii_characters,
        })
    }

    /// The number of characters: FF1's radix.
    pub fn radix(&self) -> ff1::Radix {
        self.radix
    }

    /// The numeral of `c`, if it is in the alphabet.
    fn numeral(&self, c: char) -> Option<u16> {
        match usize::try_from(u32::from(c)).ok().filter(|&i| i < 128) {
            Some(i) => self.ascii[i],
            None => self
                .others
                .binary_search_by_key(&c, |&(other, _)| other)
                .ok()
                .map(|at| self.others[at].1),
        }
    }

    /// The character of numeral `n`, below the radix.
    fn character(&self, n: u16) -> char {
        self.characters[usize::from(n)]
    }
}

impl fmt::Debug for Alphabet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alphabet")
            .field("radix", &self.radix.get())
            .finish_non_exhaustive()
    }
}

/// What becomes of a character outside the alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outside {
    /// It stays in place, as it is; the alphabet's characters around it are enciphered.
    #[default]
    Keep,
    /// The value fails (`outside_alphabet`).
    Refuse,
}

/// A format-preserving domain's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The characters pseudonyms are written in.
    pub alphabet: Alphabet,
    /// What becomes of the others.
    pub outside: Outside,
}

/// The values of a batch split for FF1: the numerals of every value in one buffer, and each
/// value's tweak.
pub(crate) struct Split {
    pub(crate) numerals: Vec<u16>,
    pub(crate) tweaks: Vec<u8>,
    /// Each value's place in `numerals` and `tweaks`; `Err` for a value with a character the
    /// format refuses, `None` for a null.
    pub(crate) items: Vec<Option<Result<SplitItem, Refused>>>,
}

/// A value with a character outside the alphabet, in a format that refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused;

#[derive(Debug, Clone)]
pub(crate) struct SplitItem {
    pub(crate) numerals: Range<usize>,
    pub(crate) tweak: Range<usize>,
}

impl Format {
    /// The format of a named `alphabet` or of custom `characters` (exactly one of them).
    pub fn new(
        alphabet: Option<&str>,
        characters: Option<&str>,
        outside: Outside,
    ) -> Result<Self, FormatError> {
        let alphabet = match (alphabet, characters) {
            (Some(name), None) => Alphabet::named(name)?,
            (None, Some(characters)) => Alphabet::custom(characters)?,
            _ => return Err(FormatError::AlphabetOrCharacters),
        };
        Ok(Format { alphabet, outside })
    }

    /// Splits `values` into numerals and tweaks (see the [module](self)).
    pub(crate) fn split<S: AsRef<str>>(&self, domain: &str, values: &[Option<S>]) -> Split {
        let mut split = Split {
            numerals: Vec::new(),
            items: Vec::with_capacity(values.len()),
            tweaks: Vec::new(),
        };
        for value in values {
            let Some(value) = value else {
                split.items.push(None);
                continue;
            };
            let (numerals_at, tweak_at) = (split.numerals.len(), split.tweaks.len());
            split.tweaks.extend_from_slice(domain.as_bytes());
            split.tweaks.push(0);
            let value = value.as_ref();
            // An ASCII value's characters are its bytes, and their positions the bytes'.
            let refused = match value.is_ascii() {
                true if self.all_in_alphabet(value.as_bytes(), &mut split.numerals) => false,
                true => self.split_one(value.bytes().map(char::from), &mut split),
                false => self.split_one(value.chars(), &mut split),
            };
            let item = match refused {
                true => {
                    split.numerals.truncate(numerals_at);
                    split.tweaks.truncate(tweak_at);
                    Err(Refused)
                }
                false => Ok(SplitItem {
                    numerals: numerals_at..split.numerals.len(),
                    tweak: tweak_at..split.tweaks.len(),
                }),
            };
            split.items.push(Some(item));
        }
        split
    }

    /// Appends the numerals of an ASCII value whose characters are all in the alphabet (most
    /// values), in one pass without a check per character; appends nothing for another value.
    fn all_in_alphabet(&self, value: &[u8], numerals: &mut Vec<u16>) -> bool {
        let start = numerals.len();
        let mut all = true;
        numerals.extend(value.iter().map(|&b| {
            // ASCII, so below 128: the mask changes nothing but spares a bounds check.
            let numeral = self.alphabet.ascii[usize::from(b & 0x7f)];
            all &= numeral.is_some();
            numeral.unwrap_or(0)
        }));
        if !all {
            numerals.truncate(start);
        }
        all
    }

    /// Adds the numerals of `characters` to `split`, and the kept ones to its last tweak;
    /// whether one was refused.
    fn split_one(&self, characters: impl Iterator<Item = char>, split: &mut Split) -> bool {
        for (position, c) in characters.enumerate() {
            match (self.alphabet.numeral(c), self.outside) {
                (Some(numeral), _) => split.numerals.push(numeral),
                (None, Outside::Keep) => {
                    let position = u32::try_from(position).unwrap_or(u32::MAX);
                    split.tweaks.extend_from_slice(&position.to_be_bytes());
                    let mut utf8 = [0; 4];
                    split
                        .tweaks
                        .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
                (None, Outside::Refuse) => return true,
            }
        }
        false
    }

    /// Appends to `out` the UTF-8 of `value` with its characters of the alphabet replaced, in
    /// order, by the characters of `numerals`.
    pub(crate) fn join(&self, value: &str, numerals: &[u16], out: &mut Vec<u8>) {
        if let (true, Some(characters)) = (value.is_ascii(), &self.alphabet.ascii_characters) {
            // Every character was in the alphabet (most values): the numerals alone say it.
            if numerals.len() == value.len() {
                out.extend(numerals.iter().map(|&n| characters[usize::from(n)]));
                return;
            }
            let mut numerals = numerals.iter();
            out.extend(
                value
                    .bytes()
                    .map(|b| match self.alphabet.ascii[usize::from(b)] {
                        None => b,
                        Some(_) => numerals.next().map_or(b, |&n| characters[usize::from(n)]),
                    }),
            );
            return;
        }
        let mut numerals = numerals.iter();
        let mut utf8 = [0; 4];
        for c in value.chars() {
            let written = match self.alphabet.numeral(c) {
                Some(_) => numerals.next().map_or(c, |&n| self.alphabet.character(n)),
                None => c,
            };
            out.extend_from_slice(written.encode_utf8(&mut utf8).as_bytes());
        }
    }
}
