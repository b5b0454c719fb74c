//! `Idempotency-Key`s of async submissions: a key names one job for the
//! job TTL, so a client retrying a submission gets the same job back. The
//! key is claimed before the job is enqueued and given back if enqueueing
//! fails, so two racing submissions with one key never both enqueue.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_scheduler::JobId;

use super::StoreError;

/// The outcome of claiming a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is now this job's.
    New,
    /// The key already names this job, for the same request.
    Existing(JobId),
    /// The key was already used for a different request.
    Conflict,
}

/// Where claimed keys are kept.
#[async_trait::async_trait]
pub trait IdempotencyKeys: Send + Sync {
    /// Claims `key` of `tenant` for job `id`, whose request has `fingerprint`, for `ttl`.
    async fn claim(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        id: &JobId,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Gives the key back if it still names job `id` (the job was not accepted).
    async fn release(&self, tenant: &str, key: &str, id: &JobId) -> Result<(), StoreError>;
}

/// (tenant, key) → (request fingerprint, job, expiry).
type Claims = HashMap<(String, String), (String, JobId, Instant)>;

/// Keys of one node, in memory (they live as long as the jobs they name,
/// which in embedded mode live in memory too).
#[derive(Debug, Default)]
pub struct LocalIdempotencyKeys {
    claims: Mutex<Claims>,
}

#[async_trait::async_trait]
impl IdempotencyKeys for LocalIdempotencyKeys {
    async fn claim(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        id: &JobId,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        claims.retain(|_, (_, _, expires)| *expires > now);
        let slot = (tenant.to_owned(), key.to_owned());
        if let Some((seen, existing, _)) = claims.get(&slot) {
            return Ok(if seen == fingerprint { Claim::Existing(existing.clone()) } else { Claim::Conflict });
        }
        claims.insert(slot, (fingerprint.to_owned(), id.clone(), now + ttl));
        Ok(Claim::New)
    }

    async fn release(&self, tenant: &str, key: &str, id: &JobId) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = (tenant.to_owned(), key.to_owned());
        if claims.get(&slot).is_some_and(|(_, claimed, _)| claimed == id) {
            claims.remove(&slot);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_names_one_job_per_tenant_until_released_or_expired() {
        let keys = LocalIdempotencyKeys::default();
        let (a, b) = (JobId("a".into()), JobId("b".into()));
        let ttl = Duration::from_secs(60);
        assert_eq!(keys.claim("t", "k", "fp", &a, ttl).await.expect("claim"), Claim::New);
        assert_eq!(keys.claim("t", "k", "fp", &b, ttl).await.expect("claim"), Claim::Existing(a.clone()));
        assert_eq!(keys.claim("t", "k", "other", &b, ttl).await.expect("claim"), Claim::Conflict);
        assert_eq!(keys.claim("u", "k", "fp", &b, ttl).await.expect("claim"), Claim::New, "tenants are apart");
        keys.release("t", "k", &b).await.expect("release");
        assert_eq!(keys.claim("t", "k", "fp", &b, ttl).await.expect("claim"), Claim::Existing(a.clone()));
        keys.release("t", "k", &a).await.expect("release");
        assert_eq!(keys.claim("t", "k", "fp", &b, Duration::ZERO).await.expect("claim"), Claim::New);
        assert_eq!(keys.claim("t", "k", "fp", &a, ttl).await.expect("claim"), Claim::New, "an expired key is free");
    }
}
