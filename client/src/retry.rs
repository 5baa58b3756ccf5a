//! When and how long to wait before sending a batch again: a pure policy (the loop that
//! follows it is the client's transport).
//!
//! Retried: connection failures, timeouts, bodies cut short, and the answers `429 Too Many
//! Requests`, `502 Bad Gateway`, `503 Service Unavailable` and `504 Gateway Timeout`. Never
//! retried: other answers (a `400`, `401`, `403`, `413` or `422` would fail the same way again).

use std::time::Duration;

/// Bounds on retrying one batch: a number of attempts and a total time, whichever ends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per batch, the first one included. Default 8.
    pub max_attempts: u32,
    /// Upper bound of the first backoff. Default 50 ms.
    pub initial_backoff: Duration,
    /// Upper bound of any backoff, `Retry-After` included. Default 5 s.
    pub max_backoff: Duration,
    /// No new attempt starts this long after a batch's first one. Default 60 s.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

/// Whether an answer of `status` is worth sending again: the statuses the [module](self) lists.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// The pause a `Retry-After` header asks for, in its delay-seconds form (the only one the
/// service sends); `None` for an HTTP date or anything unreadable.
pub fn retry_after(header: Option<&str>) -> Option<Duration> {
    header?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl RetryPolicy {
    /// No retries at all: one attempt per batch.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The pause after failed attempt number `attempt` (1 for the first), "full jitter":
    /// uniformly in `[0, min(max_backoff, initial_backoff * 2^(attempt-1))]`, where `unit` in
    /// `[0, 1)` is the random draw. A server's `Retry-After` is a floor, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        match retry_after {
            Some(floor) => jittered.max(floor.min(self.max_backoff)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_statuses_that_can_change_are_retried() {
        assert!([429, 502, 503, 504].into_iter().all(super::is_retryable));
        assert!(
            ![400, 401, 403, 413, 422, 500]
                .into_iter()
                .any(super::is_retryable)
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        use std::time::Duration;
        assert_eq!(
            super::retry_after(Some(" 7 ")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            super::retry_after(Some("Wed, 21 Oct 2026 07:28:00 GMT")),
            None
        );
        assert_eq!(super::retry_after(None), None);
    }

    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<u128> = (1..=10)
            .map(|attempt| policy.backoff(attempt, 1.0, None).as_millis())
            .collect();
        assert_eq!(
            ceilings,
            [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
        assert_eq!(policy.backoff(3, 0.5, None), Duration::from_millis(100));
        assert_eq!(policy.backoff(3, 0.0, None), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor_within_the_cap() {
        let policy = RetryPolicy::default();
        let one = Some(Duration::from_secs(1));
        assert_eq!(policy.backoff(1, 0.3, one), Duration::from_secs(1));
        let long = Some(Duration::from_secs(3600));
        assert_eq!(policy.backoff(1, 0.3, long), policy.max_backoff);
    }
}
