//! `Idempotency-Key`s of async submissions: a key names one job for the
//! job TTL, so a client retrying a submission gets the same job back. The
//! key is claimed before the job is enqueued and given back if enqueueing
//! fails, so two racing submissions with one key never both enqueue.

use std::time::Duration;

use sluice_core::TenantId;
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
///
/// Keys of different tenants never meet; a claim lasts until its TTL runs
/// out or the job that holds it releases it.
#[async_trait::async_trait]
pub trait IdempotencyKeys: Send + Sync {
    /// Claims `key` of `tenant` for job `id`, whose request has `fingerprint`, for `ttl`.
    async fn claim(
        &self,
        tenant: &TenantId,
        key: &str,
        fingerprint: &str,
        id: &JobId,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Gives the key back if it still names job `id` (the job was not accepted).
    async fn release(&self, tenant: &TenantId, key: &str, id: &JobId) -> Result<(), StoreError>;
}
