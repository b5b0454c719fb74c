//! Per-tenant request rates: a token bucket per tenant (governor), so one
//! tenant's burst never eats another's share. Each tenant's bucket takes
//! the rate and burst its operator set, else the node's.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

/// Tenants tracked at once; past it, buckets start over (a burst's worth
/// of leniency, rather than unbounded memory).
const MAX_TRACKED: usize = 100_000;

/// A rate: sustained per second, and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests a second.
    pub per_second: u32,
    /// Requests at once.
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        let rate = NonZeroU32::new(self.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(rate).allow_burst(burst)
    }
}

/// Token buckets by tenant.
#[derive(Debug)]
pub struct TenantRates {
    default: Rate,
    buckets: Mutex<HashMap<String, (Rate, Arc<DefaultDirectRateLimiter>)>>,
    clock: DefaultClock,
}

impl TenantRates {
    /// `per_second` sustained, with bursts of up to `burst` (at least the rate).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            default: Rate { per_second, burst: burst.max(per_second) },
            buckets: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token for `tenant` under its own rate (`None`: the default),
    /// or says how long until one is available. A changed rate starts a
    /// fresh bucket.
    pub fn check(&self, tenant: &str, own: Option<Rate>) -> Result<(), Duration> {
        let rate = own.unwrap_or(self.default);
        let bucket = {
            let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            match buckets.get(tenant) {
                Some((current, bucket)) if *current == rate => Arc::clone(bucket),
                _ => {
                    if buckets.len() >= MAX_TRACKED {
                        buckets.clear();
                    }
                    let bucket = Arc::new(DefaultDirectRateLimiter::direct(rate.quota()));
                    buckets.insert(tenant.to_owned(), (rate, Arc::clone(&bucket)));
                    bucket
                }
            }
        };
        bucket.check().map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// The rate a tenant with `per_second` and `burst` of its own gets:
    /// each one unset is the default.
    pub fn rate_for(&self, per_second: Option<u32>, burst: Option<u32>) -> Option<Rate> {
        if per_second.is_none() && burst.is_none() {
            return None;
        }
        let per_second = per_second.unwrap_or(self.default.per_second);
        Some(Rate { per_second, burst: burst.unwrap_or(self.default.burst.max(per_second)) })
    }

    /// Drops `tenant`'s bucket (a deleted tenant).
    pub fn forget(&self, tenant: &str) {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner).remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_limited_per_tenant() {
        let rates = TenantRates::new(1, 2);
        assert!(rates.check("a", None).is_ok());
        assert!(rates.check("a", None).is_ok());
        let wait = rates.check("a", None).expect_err("over the burst");
        assert!(wait <= Duration::from_secs(1));
        assert!(rates.check("b", None).is_ok(), "another tenant is unaffected");
    }

    #[test]
    fn a_tenant_with_its_own_rate_gets_its_own_burst() {
        let rates = TenantRates::new(1, 2);
        let own = rates.rate_for(None, Some(5));
        assert_eq!(own, Some(Rate { per_second: 1, burst: 5 }));
        for _ in 0..5 {
            assert!(rates.check("a", own).is_ok());
        }
        assert!(rates.check("a", own).is_err(), "past its own burst");
        assert_eq!(rates.rate_for(None, None), None, "nothing set: the default");
    }
}
