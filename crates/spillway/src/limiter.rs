//! A token bucket for the drain rate (records per second, shared by all forwarders).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Hands out `rate` tokens per second, with a burst of one second's worth.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// How long to wait before `n` tokens are available; takes them (possibly going into debt,
    /// so a large request waits its share instead of starving).
    pub fn reserve(&self, n: u64) -> Duration {
        let mut s = self.state.lock();
        let now = Instant::now();
        let (tokens, last) = *s;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
        let left = tokens - n as f64;
        *s = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        }
    }

    /// Waits for `n` tokens.
    pub async fn acquire(&self, n: u64) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_within_the_rate_does_not_wait_and_beyond_it_waits_its_share() {
        let l = RateLimiter::new(100);
        assert_eq!(l.reserve(100), Duration::ZERO);
        let wait = l.reserve(50);
        assert!(
            wait >= Duration::from_millis(490) && wait <= Duration::from_millis(510),
            "{wait:?}"
        );
    }
}
