//! Per-tenant request rates: a token bucket per tenant (governor), so one
//! tenant's burst never eats another's share.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Keyed token buckets.
#[derive(Debug)]
pub struct TenantRates {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl TenantRates {
    /// `per_second` sustained, with bursts of up to `burst`.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token for `tenant`, or says how long until one is available.
    pub fn check(&self, tenant: &str) -> Result<(), Duration> {
        self.limiter.check_key(&tenant.to_owned()).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_limited_per_tenant() {
        let rates = TenantRates::new(1, 2);
        assert!(rates.check("a").is_ok());
        assert!(rates.check("a").is_ok());
        let wait = rates.check("a").expect_err("over the burst");
        assert!(wait <= Duration::from_secs(1));
        assert!(rates.check("b").is_ok(), "another tenant is unaffected");
    }
}
