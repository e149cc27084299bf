//! Exponential back-off with jitter for reconnection.

use std::time::Duration;

use rand::Rng;

/// Delays that double from `min` up to `max`, each with up to ±25 % jitter so that several
/// gateways restarted together do not reconnect in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// The next delay, jittered; doubles the base for the time after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        jitter(base).min(self.max)
    }

    /// The longest delay, jittered, for failures that only an operator can fix.
    pub fn max_delay(&self) -> Duration {
        jitter(self.max).min(self.max)
    }
}

fn jitter(base: Duration) -> Duration {
    let factor = rand::rng().random_range(0.75..=1.25);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_then_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(375) && delays[0] <= Duration::from_millis(625));
        assert!(delays[3] >= Duration::from_secs(3) && delays[3] <= Duration::from_secs(5));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)));
        assert!(delays[9] >= Duration::from_millis(22500));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(625));
    }
}
