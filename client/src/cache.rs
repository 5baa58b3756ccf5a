//! A bounded memo of pseudonyms already received, so a value that repeats across calls (record
//! batches of a query, micro-batches of a stream) goes to the service once per client, not once
//! per call. Off unless [`ClientBuilder::cache_capacity`](crate::ClientBuilder::cache_capacity)
//! sets a size.
//!
//! Only `deterministic` and `hash` pseudonyms are kept: those are the same every time by design.
//! The memo holds values in memory, as the caller's data already does; its `Debug` shows sizes,
//! never entries. When full it keeps what it has and remembers nothing more: starting over
//! instead thrashes when the distinct values number about the capacity (measured: slower than
//! no cache at all).
//!
//! Each domain and mode keeps its entries in one string, a value followed by its pseudonym, and
//! a table of where each entry starts, by the value's hash: a hit reads one table slot and one
//! place in the string, and remembering allocates nothing per entry. Calls look up at the same
//! time (a read lock); only remembering waits for the others.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;

use crate::wire::Mode;

type Hasher = foldhash::fast::RandomState;

/// Pseudonyms by domain and mode, then by value.
pub(crate) struct PseudonymCache {
    capacity: usize,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    len: usize,
    by_domain: HashMap<(Box<str>, Mode), Memo, Hasher>,
}

/// The pseudonyms of one domain and mode.
#[derive(Default)]
struct Memo {
    hasher: Hasher,
    /// Every entry's value, then its pseudonym, entry after entry.
    text: String,
    table: HashTable<Entry>,
}

/// Where one entry is in [`Memo::text`].
#[derive(Clone, Copy)]
struct Entry {
    /// The value's hash, so the table grows without reading the text.
    hash: u64,
    start: usize,
    value_len: u32,
    token_len: u32,
}

impl Entry {
    fn value<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.start + self.value_len as usize]
    }

    fn token<'t>(&self, text: &'t str) -> &'t str {
        let start = self.start + self.value_len as usize;
        &text[start..start + self.token_len as usize]
    }
}

impl Memo {
    fn get(&self, value: &str) -> Option<&str> {
        let hash = self.hasher.hash_one(value);
        let is_value = |entry: &Entry| entry.hash == hash && entry.value(&self.text) == value;
        Some(self.table.find(hash, is_value)?.token(&self.text))
    }

    /// Remembers `token` for `value`; false if it already had one (or the lengths do not fit).
    fn insert(&mut self, value: &str, token: &str) -> bool {
        let (Ok(value_len), Ok(token_len)) = (value.len().try_into(), token.len().try_into())
        else {
            return false;
        };
        let Memo {
            hasher,
            text,
            table,
        } = self;
        let hash = hasher.hash_one(value);
        let is_value = |entry: &Entry| entry.hash == hash && entry.value(text) == value;
        let Slot::Vacant(slot) = table.entry(hash, is_value, |entry| entry.hash) else {
            return false;
        };
        slot.insert(Entry {
            hash,
            start: text.len(),
            value_len,
            token_len,
        });
        text.push_str(value);
        text.push_str(token);
        true
    }
}

impl std::fmt::Debug for PseudonymCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.state.read().map_or(0, |state| state.len);
        f.debug_struct("PseudonymCache")
            .field("capacity", &self.capacity)
            .field("len", &len)
            .finish()
    }
}

impl PseudonymCache {
    /// A memo of at most `capacity` pseudonyms.
    pub(crate) fn new(capacity: usize) -> Self {
        PseudonymCache {
            capacity,
            state: RwLock::new(State::default()),
        }
    }

    /// The known pseudonym of each of `values` (`None` where unknown), and the indices of the
    /// unknown ones.
    pub(crate) fn lookup(
        &self,
        domain: &str,
        mode: Mode,
        values: &[&str],
    ) -> (Vec<Option<String>>, Vec<usize>) {
        let mut answers = Vec::with_capacity(values.len());
        let misses = self.lookup_with(domain, mode, values, |hit| {
            answers.push(hit.map(str::to_owned));
        });
        (answers, misses)
    }

    /// Hands `answer` the known pseudonym of each of `values` in turn, borrowed (`None` where
    /// unknown), and returns the indices of the unknown ones. `answer` runs under the cache's
    /// read lock: it must not call the cache.
    pub(crate) fn lookup_with(
        &self,
        domain: &str,
        mode: Mode,
        values: &[&str],
        mut answer: impl FnMut(Option<&str>),
    ) -> Vec<usize> {
        // A panic elsewhere leaves at worst text without an entry: the cache stays usable.
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let known = state.by_domain.get(&(Box::from(domain), mode));
        let mut misses = Vec::new();
        for (index, value) in values.iter().enumerate() {
            let hit = known.and_then(|memo| memo.get(value));
            if hit.is_none() {
                misses.push(index);
            }
            answer(hit);
        }
        misses
    }

    /// Remembers each `(value, pseudonym)` pair (pairs without a pseudonym are skipped).
    pub(crate) fn store<'a>(
        &self,
        domain: &str,
        mode: Mode,
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let room = self.capacity.saturating_sub(state.len);
        if room == 0 {
            return;
        }
        let memo = state
            .by_domain
            .entry((Box::from(domain), mode))
            .or_default();
        let mut added = 0;
        for (value, token) in pairs {
            if added == room {
                break;
            }
            if let Some(token) = token
                && memo.insert(value, token)
            {
                added += 1;
            }
        }
        state.len += added;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_domain_and_mode_and_stops_when_full() {
        let cache = PseudonymCache::new(3);
        let token = |s: &str| Some(format!("d1.{s}"));
        let pairs = |values: &[&'static str]| -> Vec<(&'static str, Option<String>)> {
            values.iter().map(|&v| (v, token(v))).collect()
        };
        let stored = pairs(&["a", "b"]);
        cache.store(
            "vin",
            Mode::Deterministic,
            stored.iter().map(|(v, t)| (*v, t.as_deref())),
        );
        let (answers, misses) = cache.lookup("vin", Mode::Deterministic, &["b", "c", "a"]);
        assert_eq!(answers, [token("b"), None, token("a")]);
        assert_eq!(misses, [1]);
        assert_eq!(cache.lookup("email", Mode::Deterministic, &["a"]).1, [0]);
        assert_eq!(cache.lookup("vin", Mode::Hash, &["a"]).1, [0]);

        // "a" again is no new entry: it takes no room.
        let stored = pairs(&["a", "c", "d"]);
        cache.store(
            "vin",
            Mode::Deterministic,
            stored.iter().map(|(v, t)| (*v, t.as_deref())),
        );
        let (answers, misses) = cache.lookup("vin", Mode::Deterministic, &["a", "c", "d"]);
        assert_eq!(
            answers,
            [token("a"), token("c"), None],
            "full after c: d is not kept"
        );
        assert_eq!(misses, [2]);
        assert!(!format!("{cache:?}").contains("d1."));
    }

    #[test]
    fn every_entry_is_found_after_the_table_and_text_grow() {
        let cache = PseudonymCache::new(100_000);
        let values: Vec<String> = (0..20_000)
            .map(|i| "v".repeat(i % 7) + &i.to_string())
            .collect();
        let tokens: Vec<String> = values
            .iter()
            .map(|v| format!("h1.{v}{}", v.len()))
            .collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let pairs = values.iter().zip(&tokens);
        cache.store(
            "ids",
            Mode::Hash,
            pairs.map(|(v, t)| (*v, Some(t.as_str()))),
        );
        let (answers, misses) = cache.lookup("ids", Mode::Hash, &values);
        assert!(misses.is_empty());
        assert!(
            answers
                .iter()
                .zip(&tokens)
                .all(|(a, t)| a.as_ref() == Some(t))
        );
        let (_, misses) = cache.lookup("ids", Mode::Hash, &["", "v", "20000"]);
        assert_eq!(misses, [0, 1, 2]);
    }
}
