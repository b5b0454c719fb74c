//! Idempotency keys of one node, in memory: they live as long as the jobs
//! they name, which in embedded mode live in memory too.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_core::TenantId;
use sluice_scheduler::JobId;

use crate::store::StoreError;
use crate::store::idempotency::{Claim, IdempotencyKeys};

/// (tenant, key) → (request fingerprint, job, expiry).
type Claims = HashMap<(TenantId, String), (String, JobId, Instant)>;

/// The claimed keys of one process.
#[derive(Debug, Default)]
pub struct LocalIdempotencyKeys {
    claims: Mutex<Claims>,
}

#[async_trait::async_trait]
impl IdempotencyKeys for LocalIdempotencyKeys {
    async fn claim(
        &self,
        tenant: &TenantId,
        key: &str,
        fingerprint: &str,
        id: &JobId,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        claims.retain(|_, (_, _, expires)| *expires > now);
        let slot = (tenant.clone(), key.to_owned());
        if let Some((seen, existing, _)) = claims.get(&slot) {
            return Ok(if seen == fingerprint { Claim::Existing(existing.clone()) } else { Claim::Conflict });
        }
        claims.insert(slot, (fingerprint.to_owned(), id.clone(), now + ttl));
        Ok(Claim::New)
    }

    async fn release(&self, tenant: &TenantId, key: &str, id: &JobId) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = (tenant.clone(), key.to_owned());
        if claims.get(&slot).is_some_and(|(_, claimed, _)| claimed == id) {
            claims.remove(&slot);
        }
        Ok(())
    }
}
