//! What one API key may use, so one caller (a big Spark job) cannot take the whole service from
//! the others:
//!
//! - **requests in flight**: `max_concurrent_requests` of its key file entry, or
//!   `limits.max_concurrent_requests_per_key`, at once; one more is answered 429 at once.
//! - **values per second** (optional): `max_values_per_second` of its entry, or
//!   `limits.max_values_per_second_per_key`. A token bucket that holds a second's budget: a
//!   request is let in while the bucket is not empty and then takes its values out, so one
//!   request may go into debt (a batch larger than the budget still passes, once); while the
//!   bucket is in debt the key's requests are answered 429 before their body is read, with the
//!   seconds until it is paid off in `Retry-After`, which the clients wait for.
//!
//! Both are kept by key name for the life of the process, so a reload of the key file (which
//! may change a key's limits) does not reset them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What each key has in flight and left of its budget.
#[derive(Debug)]
pub struct KeyLimits {
    default: usize,
    default_values_per_second: Option<u32>,
    in_flight: Mutex<HashMap<String, usize>>,
    budgets: Mutex<HashMap<String, Bucket>>,
}

/// Values a key may still send, and when that was last counted.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    values: f64,
    at: Instant,
}

impl Bucket {
    /// The bucket at `now`, refilled at `rate` values per second, holding at most one second's.
    fn refilled(self, rate: u32, now: Instant) -> Bucket {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        Bucket {
            values: (self.values + elapsed * rate).min(rate),
            at: now,
        }
    }
}

/// One request of one key in flight; dropping it ends the request.
#[derive(Debug)]
pub struct KeyPermit {
    limits: Arc<KeyLimits>,
    name: String,
}

impl KeyLimits {
    /// Limits of `default` requests in flight per key and, if set, `default_values_per_second`,
    /// unless a key's entry sets its own.
    pub fn new(default: usize, default_values_per_second: Option<u32>) -> Arc<Self> {
        Arc::new(KeyLimits {
            default,
            default_values_per_second,
            in_flight: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
        })
    }

    /// Whether key `name`, whose own budget is `rate` values per second if set, may send a
    /// request now; `Err` with the time until its bucket is out of debt.
    pub fn admit(&self, name: &str, rate: Option<u32>) -> Result<(), Duration> {
        let Some(rate) = rate.or(self.default_values_per_second) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = budgets.entry(name.to_owned()).or_insert(Bucket {
            values: f64::from(rate),
            at: now,
        });
        *bucket = bucket.refilled(rate, now);
        if bucket.values > 0.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(-bucket.values / f64::from(rate)))
        }
    }

    /// Takes `values` out of the bucket of key `name` (a request it was admitted for).
    pub fn charge(&self, name: &str, rate: Option<u32>, values: usize) {
        let Some(rate) = rate.or(self.default_values_per_second) else {
            return;
        };
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = budgets.get_mut(name) {
            *bucket = bucket.refilled(rate, now);
            bucket.values -= values as f64;
        }
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
        let limits = KeyLimits::new(2, None);
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

    #[test]
    fn a_budget_lets_a_request_into_debt_then_refuses_until_it_is_paid_off() {
        let limits = KeyLimits::new(64, Some(1_000));
        assert!(limits.admit("spark", None).is_ok());
        limits.charge("spark", None, 3_000); // a batch of three seconds' budget: let in once
        let wait = limits.admit("spark", None).expect_err("in debt");
        assert!(
            wait > Duration::from_millis(1_900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        assert!(
            limits.admit("dashboard", None).is_ok(),
            "another key is not affected"
        );
        assert!(
            limits.admit("etl", Some(10)).is_ok(),
            "an entry's own budget"
        );
        limits.charge("etl", Some(10), 20);
        assert!(limits.admit("etl", Some(10)).is_err());
        assert!(
            KeyLimits::new(64, None).admit("spark", None).is_ok(),
            "no budget by default"
        );
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_one_seconds_budget() {
        let start = Instant::now();
        let empty = Bucket {
            values: -500.0,
            at: start,
        };
        let later = empty.refilled(1_000, start + Duration::from_millis(750));
        assert!((later.values - 250.0).abs() < 1e-6);
        let much_later = empty.refilled(1_000, start + Duration::from_secs(60));
        assert!((much_later.values - 1_000.0).abs() < 1e-6);
    }
}
