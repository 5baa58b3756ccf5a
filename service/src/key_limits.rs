//! Requests in flight per API key, so one caller (a big Spark job) cannot take the whole service
//! from the others: each key may have `max_concurrent_requests` of its key file entry, or
//! `limits.max_concurrent_requests_per_key`, at once; one more is answered 429 at once.
//!
//! Counts are kept by key name for the life of the process, so a reload of the key file (which
//! may change a key's limit) does not reset what is in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What each key has in flight.
#[derive(Debug)]
pub struct KeyLimits {
    default: usize,
    in_flight: Mutex<HashMap<String, usize>>,
}

/// One request of one key in flight; dropping it ends the request.
#[derive(Debug)]
pub struct KeyPermit {
    limits: Arc<KeyLimits>,
    name: String,
}

impl KeyLimits {
    /// Limits of `default` requests per key, unless a key's entry sets its own.
    pub fn new(default: usize) -> Arc<Self> {
        Arc::new(KeyLimits {
            default,
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// A permit for one more request of key `name`, whose own limit is `limit` if set; `Err`
    /// with the limit that is reached.
    pub fn acquire(self: &Arc<Self>, name: &str, limit: Option<usize>) -> Result<KeyPermit, usize> {
        let limit = limit.unwrap_or(self.default);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(name.to_owned()).or_insert(0);
        if *count >= limit {
            return Err(limit);
        }
        *count += 1;
        Ok(KeyPermit {
            limits: self.clone(),
            name: name.to_owned(),
        })
    }
}

impl Drop for KeyPermit {
    fn drop(&mut self) {
        let mut in_flight = self
            .limits
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_flight.get_mut(&self.name) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_limit_and_permits_give_their_place_back() {
        let limits = KeyLimits::new(2);
        let a1 = limits.acquire("spark", None).expect("first");
        let _a2 = limits.acquire("spark", None).expect("second");
        assert_eq!(limits.acquire("spark", None).err(), Some(2));
        let _b = limits
            .acquire("dashboard", None)
            .expect("another key is not affected");
        assert_eq!(limits.acquire("tiny", Some(0)).err(), Some(0));
        drop(a1);
        assert!(limits.acquire("spark", None).is_ok());
    }
}
