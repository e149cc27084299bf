//! Rates on a caller-supplied clock (sans-IO): token buckets, token buckets per key with a
//! bounded number of keys, and a throttle for log lines that outsiders can cause.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// So many events per period, in bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Events allowed at once after a quiet period.
    pub burst: u32,
    /// Events allowed per second, on average.
    pub per_second: f64,
}

impl Rate {
    /// `count` events per minute, all of them at once if the minute was quiet.
    pub fn per_minute(count: u32) -> Self {
        Self {
            burst: count,
            per_second: f64::from(count) / 60.0,
        }
    }
}

/// A token bucket: full at first, one token per event, refilled at the rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
        self.updated = now.max(self.updated);
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again (it can be forgotten: a new one would be the same).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.rate.per_second >= f64::from(self.rate.burst)
    }
}

/// What [`KeyedBuckets::try_take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A token was taken.
    Yes,
    /// This key's bucket is empty.
    Empty,
    /// The key is new and every slot holds a bucket still refilling.
    NoRoom,
}

/// A token bucket per key, for at most `max_keys` keys. Buckets that are full again are
/// forgotten, so the map holds only keys seen recently.
#[derive(Debug, Clone)]
pub struct KeyedBuckets<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    /// No buckets yet.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `key`'s bucket.
    pub fn try_take(&mut self, key: &K, now: Instant) -> Taken {
        if let Some(bucket) = self.buckets.get_mut(key) {
            return match bucket.try_take(now) {
                true => Taken::Yes,
                false => Taken::Empty,
            };
        }
        if self.buckets.len() >= self.max_keys {
            self.buckets.retain(|_, bucket| !bucket.is_full(now));
            if self.buckets.len() >= self.max_keys {
                return Taken::NoRoom;
            }
        }
        let mut bucket = TokenBucket::new(self.rate, now);
        let taken = bucket.try_take(now);
        self.buckets.insert(key.clone(), bucket);
        match taken {
            true => Taken::Yes,
            false => Taken::Empty,
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Lets log lines through at a bounded rate, counting the ones held back.
#[derive(Debug, Clone)]
pub struct LogThrottle {
    bucket: Option<TokenBucket>,
    rate: Rate,
    held_back: u64,
}

impl LogThrottle {
    /// `burst` lines at once, then one per `period`.
    pub fn new(burst: u32, period: Duration) -> Self {
        Self {
            bucket: None,
            rate: Rate {
                burst,
                per_second: 1.0 / period.as_secs_f64().max(1e-3),
            },
            held_back: 0,
        }
    }

    /// `Some(n)` when a line may be logged at `now`, `n` being how many were held back since the
    /// last one; `None` when this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let bucket = self
            .bucket
            .get_or_insert_with(|| TokenBucket::new(self.rate, now));
        if bucket.try_take(now) {
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(Rate::per_minute(6), start);
        assert!((0..6).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
        // One token every 10 s.
        assert!(!bucket.try_take(start + Duration::from_secs(9)));
        assert!(bucket.try_take(start + Duration::from_secs(10)));
        assert!(!bucket.try_take(start + Duration::from_secs(10)));
        assert!(!bucket.is_full(start + Duration::from_secs(60)));
        assert!(bucket.is_full(start + Duration::from_secs(70)));
    }

    #[test]
    fn keyed_buckets_are_bounded_and_forget_idle_keys() {
        let start = Instant::now();
        let mut buckets = KeyedBuckets::new(Rate::per_minute(2), 3);
        for key in ["a", "b", "c"] {
            assert_eq!(buckets.try_take(&key, start), Taken::Yes);
        }
        assert_eq!(buckets.try_take(&"a", start), Taken::Yes);
        assert_eq!(buckets.try_take(&"a", start), Taken::Empty);
        // No room for a fourth key while the three refill...
        assert_eq!(buckets.try_take(&"d", start), Taken::NoRoom);
        assert_eq!(buckets.len(), 3);
        // ...but once b and c are full again they are forgotten.
        let later = start + Duration::from_secs(31);
        assert_eq!(buckets.try_take(&"d", later), Taken::Yes);
        assert_eq!(buckets.len(), 2);
    }

    #[test]
    fn the_throttle_counts_what_it_held_back() {
        let start = Instant::now();
        let mut throttle = LogThrottle::new(2, Duration::from_secs(10));
        assert_eq!(throttle.allow(start), Some(0));
        assert_eq!(throttle.allow(start), Some(0));
        assert_eq!(throttle.allow(start + Duration::from_secs(1)), None);
        assert_eq!(throttle.allow(start + Duration::from_secs(2)), None);
        assert_eq!(throttle.allow(start + Duration::from_secs(10)), Some(2));
        assert_eq!(throttle.allow(start + Duration::from_secs(11)), None);
    }
}
