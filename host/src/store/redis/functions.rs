//! Functions in Redis: one hash of records per tenant, changed by
//! compare-and-set so nodes deploying at once never lose each other's
//! versions; component bytes under their hash, written once.
//!
//! Which functions use a component is a set beside its bytes (`tenant/name`
//! members). A deploy adds its function to the set before and after its
//! record changes (rewriting the bytes if a collection removed them in
//! between); a collection removes a function from the set only when that
//! function's record no longer names the version, and deletes the bytes
//! when the set is empty, in one script. So bytes a record names are never
//! left deleted.

use std::collections::HashMap;

use redis::{AsyncCommands, Script};
use sluice_core::{TenantId, Version, World};

use super::{Shared, corrupt, unavailable};
use crate::store::StoreError;
use crate::store::functions::{
    Deployment, FunctionRecord, FunctionStore, RegistryError, Removal, dropped_versions, with_deployment, with_rollback,
};

/// Replaces a hash field only if it still holds what the caller read ('' = absent);
/// an empty new value deletes it.
const COMPARE_AND_SET: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
";

/// Marks a component as used by a function (KEYS: refs, versions; ARGV:
/// member, version); answers whether its bytes are stored (KEYS[3]).
const PIN: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return redis.call('EXISTS', KEYS[3])
";

/// Unmarks a component for a function whose record (KEYS[1], field
/// ARGV[1]) no longer names it, and deletes its bytes (KEYS[3]) once no
/// function uses it (KEYS[2] refs, KEYS[4] versions; ARGV[2] member,
/// ARGV[3] the version quoted as in the record's JSON, ARGV[4] the version).
const COLLECT: &str = r"
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record and string.find(record, ARGV[3], 1, true) then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[4], ARGV[4])
return 1
";

/// How often a change is retried when other nodes keep changing the record first.
const MAX_ATTEMPTS: usize = 16;

/// Functions and component bytes in Redis.
#[derive(Debug)]
pub struct RedisFunctions {
    shared: Shared,
    script: Script,
    pin: Script,
    collect: Script,
}

impl RedisFunctions {
    /// Functions under `shared`'s prefix.
    pub fn new(shared: Shared) -> Self {
        Self { shared, script: Script::new(COMPARE_AND_SET), pin: Script::new(PIN), collect: Script::new(COLLECT) }
    }

    fn records_key(&self, tenant: &TenantId) -> String {
        self.shared.key(&format!("functions:{tenant}"))
    }

    fn component_key(&self, version: &Version) -> String {
        self.shared.key(&format!("component:{}", version.as_str().trim_start_matches("sha256:")))
    }

    fn refs_key(&self, version: &Version) -> String {
        self.shared.key(&format!("component-refs:{}", version.as_str().trim_start_matches("sha256:")))
    }

    /// Marks `version` as used by the tenant's `name`; true when its bytes are stored.
    async fn pin(&self, tenant: &TenantId, name: &str, version: &Version) -> Result<bool, StoreError> {
        let stored: i64 = self
            .pin
            .key(self.refs_key(version))
            .key(self.shared.key("versions"))
            .key(self.component_key(version))
            .arg(format!("{tenant}/{name}"))
            .arg(version.as_str())
            .invoke_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        Ok(stored == 1)
    }

    /// Collects the `dropped` versions of the tenant's `name` that no
    /// function uses any more; returns those whose bytes were deleted.
    async fn collect(&self, tenant: &TenantId, name: &str, dropped: Vec<Version>) -> Result<Vec<Version>, StoreError> {
        let mut collected = Vec::new();
        for version in dropped {
            let deleted: i64 = self
                .collect
                .key(self.records_key(tenant))
                .key(self.refs_key(&version))
                .key(self.component_key(&version))
                .key(self.shared.key("versions"))
                .arg(name)
                .arg(format!("{tenant}/{name}"))
                .arg(format!("\"{version}\""))
                .arg(version.as_str())
                .invoke_async(&mut self.shared.con())
                .await
                .map_err(unavailable)?;
            if deleted == 1 {
                collected.push(version);
            }
        }
        Ok(collected)
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

    async fn deploy_keeping(
        &self,
        tenant: &TenantId,
        name: &str,
        (version, world): (&Version, World),
        bytes: &[u8],
        keep: usize,
    ) -> Result<Deployment, StoreError> {
        if !self.pin(tenant, name, version).await? {
            let _: bool = self.shared.con().set_nx(self.component_key(version), bytes).await.map_err(unavailable)?;
        }
        let size = bytes.len() as u64;
        let deployed = self
            .update(tenant, name, |record| {
                let before = record.clone();
                let (record, is_new, _) = with_deployment(record, tenant, name, (version, world), size, keep);
                let dropped = dropped_versions(before.as_ref(), Some(&record));
                Ok((Some(record.clone()), (record, is_new, dropped)))
            })
            .await;
        let (record, is_new, dropped) = deployed.map_err(|err| match err {
            RegistryError::Store(err) => err,
            other => corrupt(other),
        })?;
        // A collection racing this deploy may have deleted the bytes before
        // the record named them; the record names them now, so put them back.
        if !self.pin(tenant, name, version).await? {
            let _: bool = self.shared.con().set_nx(self.component_key(version), bytes).await.map_err(unavailable)?;
        }
        let collected = self.collect(tenant, name, dropped).await?;
        Ok(Deployment { record, is_new, collected })
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

    async fn active_versions(&self) -> Result<Vec<Version>, StoreError> {
        let mut con = self.shared.con();
        let pattern = self.shared.key("functions:*");
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let mut versions = std::collections::BTreeSet::new();
        for key in keys {
            let records: Vec<String> = con.hvals(&key).await.map_err(unavailable)?;
            for json in records {
                let record: FunctionRecord = serde_json::from_str(&json).map_err(corrupt)?;
                versions.insert(record.active);
            }
        }
        Ok(versions.into_iter().collect())
    }

    async fn remove(&self, tenant: &TenantId, name: &str) -> Result<Removal, RegistryError> {
        let record = self
            .update(tenant, name, |record| {
                let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
                Ok((None, record))
            })
            .await?;
        let dropped = dropped_versions(Some(&record), None);
        let collected = self.collect(tenant, name, dropped).await?;
        Ok(Removal { record, collected })
    }
}
