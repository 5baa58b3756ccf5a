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
        let state = self.state.lock().ok();
        let known = state
            .as_ref()
            .and_then(|state| state.by_domain.get(&(Box::from(domain), mode)));
        let mut misses = Vec::new();
        let answers = values
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let hit = known.and_then(|map| map.get(*value)).map(|t| t.to_string());
                if hit.is_none() {
                    misses.push(index);
                }
                hit
            })
            .collect();
        (answers, misses)
    }

    /// Remembers `tokens[i]` as the pseudonym of `values[i]`.
    pub(crate) fn store(
        &self,
        domain: &str,
        mode: Mode,
        values: &[&str],
        tokens: &[Option<String>],
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
        for (value, token) in values.iter().zip(tokens) {
            if added == room {
                break;
            }
            if let Some(token) = token
                && map
                    .insert(Box::from(*value), Box::from(token.as_str()))
                    .is_none()
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
        cache.store(
            "vin",
            Mode::Deterministic,
            &["a", "b"],
            &[token("a"), token("b")],
        );
        let (answers, misses) = cache.lookup("vin", Mode::Deterministic, &["b", "c", "a"]);
        assert_eq!(answers, [token("b"), None, token("a")]);
        assert_eq!(misses, [1]);
        assert_eq!(cache.lookup("email", Mode::Deterministic, &["a"]).1, [0]);
        assert_eq!(cache.lookup("vin", Mode::Hash, &["a"]).1, [0]);

        cache.store(
            "vin",
            Mode::Deterministic,
            &["c", "d"],
            &[token("c"), token("d")],
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
