//! Token-bucket rate limits per client address and action.

use std::{collections::HashMap, net::IpAddr, sync::Arc, sync::Mutex};

use palisade_core::{Clock, Error, ErrorKind, Result, config::RateLimit, config::RateLimits};

/// An action that is rate limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitedAction {
    /// A `/login` attempt.
    Login,
    /// A `/register` attempt.
    Registration,
    /// A media upload or reservation.
    MediaUpload,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

/// Buckets per (action, address).
pub struct RateLimiter {
    limits: RateLimits,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<(RateLimitedAction, IpAddr), Bucket>>,
}

/// Buckets kept before full ones are swept away.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    /// A limiter with the configured limits.
    pub fn new(limits: RateLimits, clock: Arc<dyn Clock>) -> Self {
        Self { limits, clock, buckets: Mutex::new(HashMap::new()) }
    }

    fn limit(&self, action: RateLimitedAction) -> RateLimit {
        match action {
            RateLimitedAction::Login => self.limits.login,
            RateLimitedAction::Registration => self.limits.registration,
            RateLimitedAction::MediaUpload => self.limits.media_upload,
        }
    }

    /// Takes one token for `action` from `ip`, or fails with `M_LIMIT_EXCEEDED`.
    pub fn check(&self, action: RateLimitedAction, ip: IpAddr) -> Result<()> {
        let limit = self.limit(action);
        let now = self.clock.now_millis();
        let burst = f64::from(limit.burst);
        let mut buckets = self.buckets.lock().expect("rate limiter poisoned");
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|(a, _), b| {
                let l = self.limit(*a);
                b.tokens + (now.saturating_sub(b.updated_ms) as f64 / 1000.0) * l.per_second
                    < f64::from(l.burst)
            });
        }
        let bucket =
            buckets.entry((action, ip)).or_insert(Bucket { tokens: burst, updated_ms: now });
        let elapsed = now.saturating_sub(bucket.updated_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.updated_ms = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let retry_after_ms = if limit.per_second > 0.0 {
            ((1.0 - bucket.tokens) / limit.per_second * 1000.0).ceil() as u64
        } else {
            u64::MAX / 2
        };
        Err(Error::new(ErrorKind::LimitExceeded { retry_after_ms }, "Too many requests"))
    }
}

#[cfg(test)]
mod tests {
    use palisade_core::clock::ManualClock;

    use super::*;

    #[test]
    fn bucket_refills_over_time() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limit = RateLimit { per_second: 1.0, burst: 2 };
        let limiter = RateLimiter::new(
            RateLimits { login: limit, registration: limit, media_upload: limit },
            clock.clone(),
        );
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        limiter.check(RateLimitedAction::Login, ip).unwrap();
        limiter.check(RateLimitedAction::Login, ip).unwrap();
        let err = limiter.check(RateLimitedAction::Login, ip).unwrap_err();
        assert_eq!(err.kind, ErrorKind::LimitExceeded { retry_after_ms: 1000 });
        // Another action and another address have their own buckets.
        limiter.check(RateLimitedAction::Registration, ip).unwrap();
        limiter.check(RateLimitedAction::Login, "127.0.0.2".parse().unwrap()).unwrap();
        clock.advance(1000);
        limiter.check(RateLimitedAction::Login, ip).unwrap();
    }
}
