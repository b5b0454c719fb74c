//! Idempotency keys in Redis, expiring with the job TTL.

use std::time::Duration;

use redis::{AsyncCommands, Script};
use sluice_core::TenantId;
use sluice_scheduler::JobId;

use super::{Shared, corrupt, unavailable};
use crate::store::idempotency::{Claim, IdempotencyKeys};
use crate::store::{StoreError, sha256_hex};

/// Claims an idempotency key, or returns what it already holds.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Deletes a key only if it still holds the given value.
const DELETE_IF: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// Idempotency keys in Redis; each holds `fingerprint job-id`.
#[derive(Debug)]
pub struct RedisIdempotencyKeys {
    shared: Shared,
    claim: Script,
    release: Script,
}

impl RedisIdempotencyKeys {
    /// Keys under `shared`'s prefix.
    pub fn new(shared: Shared) -> Self {
        Self { shared, claim: Script::new(CLAIM), release: Script::new(DELETE_IF) }
    }

    fn key(&self, tenant: &TenantId, key: &str) -> String {
        // Hashed: a client's key may hold anything, and may be long.
        self.shared.key(&format!("idem:{tenant}:{}", sha256_hex(key.as_bytes())))
    }
}

#[async_trait::async_trait]
impl IdempotencyKeys for RedisIdempotencyKeys {
    async fn claim(
        &self,
        tenant: &TenantId,
        key: &str,
        fingerprint: &str,
        id: &JobId,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: Option<String> = self
            .claim
            .key(self.key(tenant, key))
            .arg(format!("{fingerprint} {id}"))
            .arg(ttl_ms)
            .invoke_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        let Some(held) = held else { return Ok(Claim::New) };
        let (seen, existing) = held.split_once(' ').ok_or_else(|| corrupt(&held))?;
        Ok(if seen == fingerprint { Claim::Existing(JobId(existing.to_owned())) } else { Claim::Conflict })
    }

    async fn release(&self, tenant: &TenantId, key: &str, id: &JobId) -> Result<(), StoreError> {
        // The fingerprint is unknown here: match on the job id part.
        let stored: Option<String> = self.shared.con().get(self.key(tenant, key)).await.map_err(unavailable)?;
        let Some(stored) = stored.filter(|s| s.ends_with(&format!(" {id}"))) else { return Ok(()) };
        let _: i64 = self
            .release
            .key(self.key(tenant, key))
            .arg(stored)
            .invoke_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
