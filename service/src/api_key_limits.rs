//! What one API key may use, so one caller (a big Spark job) cannot take the whole service from
//! the others:
//!
//! - **requests in flight**: `max_concurrent_requests` of its key file entry, or
//!   `limits.max_concurrent_requests_per_key`, at once; one more is answered 429 at once.
//! - **values per second** (optional): `max_values_per_second` of its entry, or
//!   `limits.max_values_per_second_per_key`. A token bucket that holds a second's budget: a
//!   request is let in while the bucket is not empty, reserving as many values as the key's
//!   largest request so far (its body is not read yet; at least one), and settles with its real
//!   count once read. So requests let in together cannot together overdraw the bucket by more
//!   than about one batch, and a batch larger than the budget still passes, into debt. Every
//!   request let in costs at least one value, whatever happens to it after: one refused for its
//!   body or its domain, or with no values, is not free, and a request that fails while its
//!   values are read costs those read. While the bucket is in debt the key's requests are
//!   answered 429 before their body is read, with the seconds until it is paid off in
//!   `Retry-After`, which the clients wait for.
//!
//! Both are kept by key name for the life of the process, so a reload of the key file (which
//! may change a key's limits) does not reset them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What each key has in flight and left of its budget.
#[derive(Debug)]
pub struct ApiKeyLimits {
    default: usize,
    default_values_per_second: Option<u32>,
    in_flight: Mutex<HashMap<String, usize>>,
    budgets: Mutex<HashMap<String, Bucket>>,
}

/// Values a key may still send, when that was last counted, and how many values its largest
/// request had (what the next one reserves).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    values: f64,
    at: Instant,
    largest_request: f64,
}

impl Bucket {
    /// The bucket at `now`, refilled at `rate` values per second, holding at most one second's.
    fn refilled(self, rate: u32, now: Instant) -> Bucket {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        Bucket {
            values: (self.values + elapsed * rate).min(rate),
            at: now,
            ..self
        }
    }
}

/// The values one admitted request reserved from its key's bucket: settled with the request's
/// real count once its body is read (or with what was read of it when reading failed), or with
/// one value if it ends before that.
#[derive(Debug)]
pub struct Reservation {
    limits: Arc<ApiKeyLimits>,
    name: String,
    rate: u32,
    reserved: f64,
    settled: AtomicBool,
}

impl Reservation {
    /// Takes the request's real count of values (at least one) out of the bucket instead of
    /// the reservation.
    pub fn settle(&self, values: usize) {
        if !self.settled.swap(true, Ordering::SeqCst) {
            let values = values.max(1) as f64;
            self.limits.update(&self.name, self.rate, |bucket| {
                bucket.values += self.reserved - values;
                bucket.largest_request = bucket.largest_request.max(values);
            });
        }
    }
}

impl Drop for Reservation {
    /// A request that ends before its values are read costs one value.
    fn drop(&mut self) {
        self.settle(1);
    }
}

/// One request of one key in flight; dropping it ends the request.
#[derive(Debug)]
pub struct KeyPermit {
    limits: Arc<ApiKeyLimits>,
    name: String,
}

impl ApiKeyLimits {
    /// Limits of `default` requests in flight per key and, if set, `default_values_per_second`,
    /// unless a key's entry sets its own.
    pub fn new(default: usize, default_values_per_second: Option<u32>) -> Arc<Self> {
        Arc::new(ApiKeyLimits {
            default,
            default_values_per_second,
            in_flight: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
        })
    }

    /// Whether key `name`, whose own budget is `rate` values per second if set, may send a
    /// request now: its reservation (none without a budget), or `Err` with the time until its
    /// bucket is out of debt.
    pub fn admit(
        self: &Arc<Self>,
        name: &str,
        rate: Option<u32>,
    ) -> Result<Option<Reservation>, Duration> {
        let Some(rate) = rate.or(self.default_values_per_second) else {
            return Ok(None);
        };
        let mut admitted = Err(Duration::ZERO);
        self.update(name, rate, |bucket| {
            admitted = if bucket.values > 0.0 {
                let reserved = bucket.largest_request.max(1.0);
                bucket.values -= reserved;
                Ok(reserved)
            } else {
                Err(Duration::from_secs_f64(-bucket.values / f64::from(rate)))
            };
        });
        admitted.map(|reserved| {
            Some(Reservation {
                limits: self.clone(),
                name: name.to_owned(),
                rate,
                reserved,
                settled: AtomicBool::new(false),
            })
        })
    }

    /// Changes the bucket of key `name`, refilled to now (a full one if it is new).
    fn update(&self, name: &str, rate: u32, change: impl FnOnce(&mut Bucket)) {
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = budgets.entry(name.to_owned()).or_insert(Bucket {
            values: f64::from(rate),
            at: now,
            largest_request: 0.0,
        });
        *bucket = bucket.refilled(rate, now);
        change(bucket);
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
        let limits = ApiKeyLimits::new(2, None);
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
        let limits = ApiKeyLimits::new(64, Some(1_000));
        let first = limits.admit("spark", None).expect("a full bucket");
        first.expect("a budget").settle(3_000); // three seconds' budget: let in once
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
            ApiKeyLimits::new(64, None)
                .admit("spark", None)
                .expect("no budget")
                .is_none(),
            "no budget by default"
        );
    }

    #[test]
    fn requests_let_in_together_reserve_what_the_largest_one_had() {
        let limits = ApiKeyLimits::new(64, Some(1_000));
        limits
            .admit("etl", None)
            .expect("full")
            .expect("budget")
            .settle(400);
        // 600 left; each new request reserves 400, so the second one in flight overdraws it
        // and a third is refused before any of them is read.
        let a = limits.admit("etl", None).expect("600 left");
        let b = limits.admit("etl", None).expect("200 left");
        assert!(
            limits.admit("etl", None).is_err(),
            "in debt while both are in flight"
        );
        drop(b); // ended before its body was read: its reservation comes back, less one
        let c = limits.admit("etl", None).expect("199 left");
        drop((a, c));
        assert!(
            limits.admit("etl", None).is_ok(),
            "given back, less one each"
        );
    }

    /// Found in review: a request without values cost nothing and made the next ones reserve
    /// nothing, so a key's 64 requests in flight after it all passed a bucket of one value.
    #[test]
    fn a_request_without_values_costs_one_and_does_not_lower_the_reservation() {
        let limits = ApiKeyLimits::new(64, Some(1_000));
        let big = limits.admit("etl", None).expect("full").expect("budget");
        big.settle(900);
        for _ in 0..50 {
            limits
                .admit("etl", None)
                .expect("in budget")
                .expect("budget")
                .settle(0);
        }
        // 1000 - 900 - 50 = 50 left: the next request reserves 900 (the largest), so the one
        // after it is refused although nothing was read.
        let _next = limits.admit("etl", None).expect("50 left");
        assert!(
            limits.admit("etl", None).is_err(),
            "no free rides after empty requests"
        );
    }

    #[test]
    fn a_request_that_ends_unread_costs_one_value() {
        let limits = ApiKeyLimits::new(64, Some(3));
        // Each is let in and dropped unread; the bucket refills by a hair between them, so the
        // fourth may pass too, but not many more.
        let let_in = (0..100)
            .take_while(|_| limits.admit("probe", None).is_ok())
            .count();
        assert!(
            (3..=4).contains(&let_in),
            "{let_in} let in on a budget of 3"
        );
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_one_seconds_budget() {
        let start = Instant::now();
        let empty = Bucket {
            values: -500.0,
            at: start,
            largest_request: 0.0,
        };
        let later = empty.refilled(1_000, start + Duration::from_millis(750));
        assert!((later.values - 250.0).abs() < 1e-6);
        let much_later = empty.refilled(1_000, start + Duration::from_secs(60));
        assert!((much_later.values - 1_000.0).abs() < 1e-6);
    }
}
