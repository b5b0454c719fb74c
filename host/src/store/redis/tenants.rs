//! Tenants in Redis: by name (so names are unique) and by key hash (so a
//! key authenticates in one lookup).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{AsyncCommands, Script};

use super::{Shared, corrupt, unavailable};
use crate::store::StoreError;
use crate::store::sha256_hex;
use crate::store::tenants::{Tenant, TenantError, TenantStore, new_admin_token, new_tenant};

/// How long an authenticated key is trusted without asking Redis again.
/// Tenants are never deleted or re-keyed, so this only saves round trips.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// Creates a tenant unless its name is taken.
const CREATE_TENANT: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
";

/// Tenants in Redis, with recently authenticated keys cached in the process.
#[derive(Debug)]
pub struct RedisTenants {
    shared: Shared,
    script: Script,
    authenticated: Mutex<HashMap<String, (Tenant, Instant)>>,
}

impl RedisTenants {
    /// Tenants under `shared`'s prefix.
    pub fn new(shared: Shared) -> Self {
        Self { shared, script: Script::new(CREATE_TENANT), authenticated: Mutex::new(HashMap::new()) }
    }
}

#[async_trait::async_trait]
impl TenantStore for RedisTenants {
    async fn create(&self, name: &str) -> Result<(Tenant, String), TenantError> {
        let (tenant, key) = new_tenant(name)?;
        let json = serde_json::to_string(&tenant).map_err(corrupt)?;
        let created: i64 = self
            .script
            .key(self.shared.key("tenants"))
            .key(self.shared.key("tenant-keys"))
            .arg(name)
            .arg(&tenant.key_sha256)
            .arg(json)
            .invoke_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        if created == 0 {
            return Err(TenantError::NameTaken(name.to_owned()));
        }
        Ok((tenant, key))
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        let hash = sha256_hex(key.as_bytes());
        if let Some((tenant, at)) = self.authenticated.lock().unwrap_or_else(PoisonError::into_inner).get(&hash)
            && at.elapsed() < AUTH_CACHE_TTL
        {
            return Ok(Some(tenant.clone()));
        }
        let json: Option<String> =
            self.shared.con().hget(self.shared.key("tenant-keys"), &hash).await.map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let tenant: Tenant = serde_json::from_str(&json).map_err(corrupt)?;
        self.authenticated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash, (tenant.clone(), Instant::now()));
        Ok(Some(tenant))
    }

    async fn configure_admin(&self, token: Option<&str>) -> Result<Option<String>, StoreError> {
        let key = self.shared.key("admin");
        let mut con = self.shared.con();
        if let Some(token) = token {
            let () = con.set(&key, sha256_hex(token.as_bytes())).await.map_err(unavailable)?;
            return Ok(None);
        }
        let (token, hash) = new_admin_token();
        // Only the first node to start generates one; the others keep it.
        let created: bool = con.set_nx(&key, hash).await.map_err(unavailable)?;
        Ok(created.then_some(token))
    }

    async fn is_admin(&self, token: &str) -> Result<bool, StoreError> {
        let stored: Option<String> = self.shared.con().get(self.shared.key("admin")).await.map_err(unavailable)?;
        Ok(stored.as_deref() == Some(sha256_hex(token.as_bytes()).as_str()))
    }
}
