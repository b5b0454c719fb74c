//! Functions in Redis: one hash of records per tenant, changed by
//! compare-and-set so nodes deploying at once never lose each other's
//! versions; component bytes under their hash, written once.

use std::collections::HashMap;

use redis::{AsyncCommands, Script};
use sluice_core::{TenantId, Version};

use super::{Shared, corrupt, unavailable};
use crate::store::StoreError;
use crate::store::functions::{FunctionRecord, FunctionStore, RegistryError, with_deployment, with_rollback};

/// Replaces a hash field only if it still holds what the caller read ('' = absent);
/// an empty new value deletes it.
const COMPARE_AND_SET: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
";

/// How often a change is retried when other nodes keep changing the record first.
const MAX_ATTEMPTS: usize = 16;

/// Functions and component bytes in Redis.
#[derive(Debug)]
pub struct RedisFunctions {
    shared: Shared,
    script: Script,
}

impl RedisFunctions {
    /// Functions under `shared`'s prefix.
    pub fn new(shared: Shared) -> Self {
        Self { shared, script: Script::new(COMPARE_AND_SET) }
    }

    fn records_key(&self, tenant: &TenantId) -> String {
        self.shared.key(&format!("functions:{tenant}"))
    }

    fn component_key(&self, version: &Version) -> String {
        self.shared.key(&format!("component:{}", version.as_str().trim_start_matches("sha256:")))
    }

    async fn read(&self, tenant: &TenantId, name: &str) -> Result<(String, Option<FunctionRecord>), StoreError> {
        let json: Option<String> = self.shared.con().hget(self.records_key(tenant), name).await.map_err(unavailable)?;
        let record = json.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?;
        Ok((json.unwrap_or_default(), record))
    }

    /// Applies `change` to the record with compare-and-set, retrying when
    /// another node changed it in between; `None` from `change` deletes it.
    async fn update<T>(
        &self,
        tenant: &TenantId,
        name: &str,
        change: impl Fn(Option<FunctionRecord>) -> Result<(Option<FunctionRecord>, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        for _ in 0..MAX_ATTEMPTS {
            let (seen, record) = self.read(tenant, name).await?;
            let (updated, answer) = change(record)?;
            let json = updated.map(|r| serde_json::to_string(&r)).transpose().map_err(corrupt)?.unwrap_or_default();
            let swapped: i64 = self
                .script
                .key(self.records_key(tenant))
                .arg(name)
                .arg(seen)
                .arg(json)
                .invoke_async(&mut self.shared.con())
                .await
                .map_err(unavailable)?;
            if swapped == 1 {
                return Ok(answer);
            }
        }
        Err(StoreError::Unavailable(format!("function {name:?} is being changed by many callers at once")).into())
    }
}

#[async_trait::async_trait]
impl FunctionStore for RedisFunctions {
    async fn component(&self, version: &Version) -> Result<Vec<u8>, StoreError> {
        let bytes: Option<Vec<u8>> = self.shared.con().get(self.component_key(version)).await.map_err(unavailable)?;
        bytes.ok_or_else(|| StoreError::CorruptRecord(format!("the bytes of {version} are missing")))
    }

    async fn deploy(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &Version,
        bytes: &[u8],
    ) -> Result<(FunctionRecord, bool), StoreError> {
        let mut con = self.shared.con();
        let _: bool = con.set_nx(self.component_key(version), bytes).await.map_err(unavailable)?;
        let _: i64 = con.sadd(self.shared.key("versions"), version.as_str()).await.map_err(unavailable)?;
        let size = bytes.len() as u64;
        let deployed = self
            .update(tenant, name, |record| {
                let (record, is_new) = with_deployment(record, tenant, name, version, size);
                Ok((Some(record.clone()), (record, is_new)))
            })
            .await;
        deployed.map_err(|err| match err {
            RegistryError::Store(err) => err,
            other => corrupt(other),
        })
    }

    async fn rollback(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<&Version>,
    ) -> Result<FunctionRecord, RegistryError> {
        self.update(tenant, name, |record| {
            let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
            let record = with_rollback(record, version)?;
            Ok((Some(record.clone()), record))
        })
        .await
    }

    async fn get(&self, tenant: &TenantId, name: &str) -> Result<Option<FunctionRecord>, StoreError> {
        Ok(self.read(tenant, name).await?.1)
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<FunctionRecord>, StoreError> {
        let all: HashMap<String, String> =
            self.shared.con().hgetall(self.records_key(tenant)).await.map_err(unavailable)?;
        let mut records: Vec<FunctionRecord> =
            all.values().map(|json| serde_json::from_str(json)).collect::<Result<_, _>>().map_err(corrupt)?;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    async fn all_versions(&self) -> Result<Vec<Version>, StoreError> {
        let versions: Vec<String> =
            self.shared.con().smembers(self.shared.key("versions")).await.map_err(unavailable)?;
        Ok(versions.into_iter().map(Version).collect())
    }

    async fn delete(&self, tenant: &TenantId, name: &str) -> Result<FunctionRecord, RegistryError> {
        self.update(tenant, name, |record| {
            let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
            Ok((None, record))
        })
        .await
    }
}
