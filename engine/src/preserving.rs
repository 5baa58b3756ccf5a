//! Format-preserving pseudonyms: FF1 ([`crate::ff1`]) over a domain's [`Format`], with the FF1
//! key of one key version.
//!
//! Such a pseudonym carries no version and no integrity check: it is opened with the version
//! the caller names (the service: the one the domain's format pins), and a pseudonym altered
//! or opened with another version gives another value of the same format, never an error.

use pseudonym_client::ItemErrorCode;
use pseudonym_client::wire::{Domain, ItemError};

use crate::buffers::disjoint_mut;
use crate::engine::Engine;
use crate::ff1::{Ff1, Ff1Error};
use crate::format::{Format, Split};
use crate::texts::{Texts, TextsBuilder};

/// One answer per input: a pseudonym or value, `None` for a null or an item that failed; the
/// items that failed, by index, in order.
#[derive(Debug, Default)]
pub struct Preserved {
    /// The answers, index for index.
    pub texts: Texts,
    /// The items that failed.
    pub errors: Vec<ItemError>,
}

/// One pass of FF1 over a batch.
#[derive(Clone, Copy)]
enum Pass {
    Encipher(u32),
    Decipher(u32),
}

impl Engine {
    /// The format-preserving pseudonym of each value in `domain`, under key `version`: same
    /// order, `None` stays `None`. A value fails with `outside_alphabet`,
    /// `format_too_short` or `format_too_long`, or every value with `unknown_key_version`.
    pub fn pseudonymize_preserving<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        format: &Format,
        version: u32,
        values: &[Option<S>],
    ) -> Preserved {
        self.preserve(domain, format, &[Pass::Encipher(version)], values)
    }

    /// The value of each format-preserving pseudonym of `domain` made with key `version`: the
    /// inverse of [`Engine::pseudonymize_preserving`], with the same errors.
    pub fn reidentify_preserving<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        format: &Format,
        version: u32,
        pseudonyms: &[Option<S>],
    ) -> Preserved {
        self.preserve(domain, format, &[Pass::Decipher(version)], pseudonyms)
    }

    /// Each pseudonym made with key `from` made again with key `to`, the value never leaving
    /// the numerals it is deciphered into.
    pub fn rewrap_preserving<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        format: &Format,
        from: u32,
        to: u32,
        pseudonyms: &[Option<S>],
    ) -> Preserved {
        let passes = [Pass::Decipher(from), Pass::Encipher(to)];
        self.preserve(domain, format, &passes, pseudonyms)
    }

    fn preserve<S: AsRef<str>>(
        &self,
        domain: Domain<'_>,
        format: &Format,
        passes: &[Pass],
        items: &[Option<S>],
    ) -> Preserved {
        let Split {
            mut numerals,
            tweaks,
            items: split,
        } = format.split(domain.as_str(), items);
        let mut codes: Vec<Option<ItemErrorCode>> = split
            .iter()
            .map(|item| match item {
                Some(Err(_)) => Some(ItemErrorCode::OutsideAlphabet),
                _ => None,
            })
            .collect();
        let ready: Vec<(usize, &crate::format::SplitItem)> = split
            .iter()
            .enumerate()
            .filter_map(|(index, item)| Some((index, item.as_ref()?.as_ref().ok()?)))
            .collect();
        for pass in passes {
            let (Pass::Encipher(version) | Pass::Decipher(version)) = *pass;
            let Some(key) = self.ff1_key(version) else {
                for &(index, _) in &ready {
                    codes[index] = Some(ItemErrorCode::UnknownKeyVersion);
                }
                break;
            };
            let mut strings = disjoint_mut(
                &mut numerals,
                ready.iter().map(|(_, item)| item.numerals.clone()),
            );
            let item_tweaks: Vec<&[u8]> = ready
                .iter()
                .map(|(_, item)| &tweaks[item.tweak.clone()])
                .collect();
            let failures = run(key, format, *pass, &mut strings, &item_tweaks);
            for (&(index, _), failure) in ready.iter().zip(failures) {
                if let (Some(error), None) = (failure, codes[index]) {
                    codes[index] = Some(match error {
                        Ff1Error::TooShort => ItemErrorCode::FormatTooShort,
                        Ff1Error::TooLong => ItemErrorCode::FormatTooLong,
                    });
                }
            }
        }
        let mut texts = TextsBuilder::with_capacity(items.len(), 24);
        let mut errors = Vec::new();
        let mut ready = ready.iter().peekable();
        for (index, item) in items.iter().enumerate() {
            let numerals_of = ready
                .next_if(|(at, _)| *at == index)
                .map(|(_, split)| &numerals[split.numerals.clone()]);
            match (item, codes[index], numerals_of) {
                (Some(item), None, Some(numerals)) => {
                    texts.push_with(|out| format.join(item.as_ref(), numerals, out));
                }
                (_, Some(code), _) => {
                    errors.push(ItemError { index, code });
                    texts.push_none();
                }
                _ => texts.push_none(),
            }
        }
        // Characters of a `str` replaced by characters: UTF-8 in, UTF-8 out.
        let (texts, not_utf8) = texts.finish();
        debug_assert!(not_utf8.is_empty());
        Preserved { texts, errors }
    }
}

fn run(
    key: &Ff1,
    format: &Format,
    pass: Pass,
    strings: &mut [&mut [u16]],
    tweaks: &[&[u8]],
) -> Vec<Option<Ff1Error>> {
    let radix = format.alphabet.radix();
    match pass {
        Pass::Encipher(_) => key.encrypt(radix, strings, tweaks),
        Pass::Decipher(_) => key.decrypt(radix, strings, tweaks),
    }
}
