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

use std::collections::HashMap;
use std::sync::Mutex;

use crate::wire::Mode;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// Pseudonyms of one domain and mode, by value.
type Tokens = Map<Box<str>, Box<str>>;

/// Pseudonyms by domain and mode, then by value.
pub(crate) struct PseudonymCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    len: usize,
    by_domain: Map<(Box<str>, Mode), Tokens>,
}

impl std::fmt::Debug for PseudonymCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.state.lock().map_or(0, |state| state.len);
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
            state: Mutex::new(State::default()),
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
    /// unknown), and returns the indices of the unknown ones.
    pub(crate) fn lookup_with(
        &self,
        domain: &str,
        mode: Mode,
        values: &[&str],
        mut answer: impl FnMut(Option<&str>),
    ) -> Vec<usize> {
        let state = self.state.lock().ok();
        let known = state
            .as_ref()
            .and_then(|state| state.by_domain.get(&(Box::from(domain), mode)));
        let mut misses = Vec::new();
        for (index, value) in values.iter().enumerate() {
            let hit = known.and_then(|map| map.get(*value)).map(AsRef::as_ref);
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
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let room = self.capacity.saturating_sub(state.len);
        if room == 0 {
            return;
        }
        let map = state
            .by_domain
            .entry((Box::from(domain), mode))
            .or_default();
        let mut added = 0;
        for (value, token) in pairs {
            if added == room {
                break;
            }
            if let Some(token) = token
                && map.insert(Box::from(value), Box::from(token)).is_none()
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

        let stored = pairs(&["c", "d"]);
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
}
