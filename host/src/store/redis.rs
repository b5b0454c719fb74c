//! The Redis backend of every store, so many front doors and workers share
//! one state.
//!
//! | key | what |
//! |---|---|
//! | `{p}:tenants` | hash: tenant name → tenant (JSON) |
//! | `{p}:tenant-keys` | hash: SHA-256 of an API key → tenant (JSON) |
//! | `{p}:admin` | SHA-256 of the admin token |
//! | `{p}:functions:{tenant}` | hash: function name → record (JSON) |
//! | `{p}:component:{sha256}` | component bytes, written once |
//! | `{p}:versions` | set of every deployed version (to warm workers) |
//! | `{p}:idem:{tenant}:{sha256(key)}` | `fingerprint job-id`, expires with the job TTL |
//! | `{p}:usage:log` | stream of usage records (JSON) not yet aggregated |
//! | `{p}:usage:seen:{job}` | marks a job's usage as logged (kept 7 days) |
//! | `{p}:usage:cursor` | id of the last aggregated log entry |
//! | `{p}:usage:totals:{tenant}` | hash: `hour|function|metric` → count |
//!
//! Changes that must not interleave (a record's compare-and-set, logging a
//! job's usage once, committing totals with the cursor) are Lua scripts.
//! Every command has a short response timeout, so an outage surfaces as
//! [`StoreError::Unavailable`] (a 503 at the front door) instead of a hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use sluice_scheduler::{JobId, KeepAlive, Usage, connection_manager};

use super::functions::{FunctionRecord, FunctionStore, RegistryError, with_deployment, with_rollback};
use super::idempotency::{Claim, IdempotencyKeys};
use super::tenants::{Tenant, TenantError, TenantStore, new_admin_token, new_tenant};
use super::usage::{Bucket, CommitError, UsageBatch, UsageEntry, UsageLedger, sum_by_function};
use super::{StoreError, sha256_hex};

/// How long a job's usage stays marked as logged: far beyond any retry.
const USAGE_SEEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long an authenticated key is trusted without asking Redis again.
/// Tenants are never deleted or re-keyed, so this only saves round trips.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// Creates a tenant unless its name is taken.
const CREATE_TENANT: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
";

/// Replaces a hash field only if it still holds what the caller read ('' = absent);
/// an empty new value deletes it.
const COMPARE_AND_SET: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
";

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

/// Logs a job's usage once.
const RECORD_USAGE: &str = r"
if not redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'entry', ARGV[2])
return 1
";

/// Adds a batch to the totals and moves the cursor, if the cursor is still
/// where the batch started; trims what was aggregated from the log.
/// ARGV: from, through, trim-below, bucket count, then per bucket its field
/// prefix and seven counts; KEYS[3..] are the buckets' totals hashes.
const COMMIT_USAGE: &str = r"
local cursor = redis.call('GET', KEYS[1]) or '0-0'
if cursor ~= ARGV[1] then return 0 end
local metrics = {'invocations', 'failures', 'cpu_us', 'wall_us', 'bytes_in', 'bytes_out', 'cost_micros'}
local at = 5
for b = 1, tonumber(ARGV[4]) do
  local prefix = ARGV[at]
  at = at + 1
  for _, metric in ipairs(metrics) do
    redis.call('HINCRBY', KEYS[2 + b], prefix .. '|' .. metric, ARGV[at])
    at = at + 1
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3])
return 1
";

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::CorruptRecord(err.to_string())
}

/// One connection (reconnecting by itself) and the key prefix, shared by
/// the Redis stores of a process.
#[derive(Clone)]
pub struct Shared {
    con: ConnectionManager,
    prefix: String,
    _keep_alive: Arc<KeepAlive>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects to `url`; keys are named under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let con = connection_manager(&client, Duration::from_secs(1)).await.map_err(unavailable)?;
        let keep_alive = Arc::new(KeepAlive::start(con.clone()));
        Ok(Self { con, prefix: prefix.to_owned(), _keep_alive: keep_alive })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }
}

/// Tenants in Redis.
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

    fn records_key(&self, tenant: &str) -> String {
        self.shared.key(&format!("functions:{tenant}"))
    }

    async fn read(&self, tenant: &str, name: &str) -> Result<(String, Option<FunctionRecord>), StoreError> {
        let json: Option<String> = self.shared.con().hget(self.records_key(tenant), name).await.map_err(unavailable)?;
        let record = json.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?;
        Ok((json.unwrap_or_default(), record))
    }

    /// Applies `change` to the record with compare-and-set, retrying when
    /// another node changed it in between; `None` from `change` deletes it.
    async fn update<T>(
        &self,
        tenant: &str,
        name: &str,
        change: impl Fn(Option<FunctionRecord>) -> Result<(Option<FunctionRecord>, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        for _ in 0..16 {
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
    async fn component(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        let key = self.shared.key(&format!("component:{}", version.trim_start_matches("sha256:")));
        let bytes: Option<Vec<u8>> = self.shared.con().get(key).await.map_err(unavailable)?;
        bytes.ok_or_else(|| StoreError::CorruptRecord(format!("the bytes of {version} are missing")))
    }

    async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<(FunctionRecord, bool), StoreError> {
        let key = self.shared.key(&format!("component:{}", version.trim_start_matches("sha256:")));
        let mut con = self.shared.con();
        let _: bool = con.set_nx(key, bytes).await.map_err(unavailable)?;
        let _: i64 = con.sadd(self.shared.key("versions"), version).await.map_err(unavailable)?;
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

    async fn rollback(&self, tenant: &str, name: &str, version: Option<&str>) -> Result<FunctionRecord, RegistryError> {
        self.update(tenant, name, |record| {
            let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
            let record = with_rollback(record, version)?;
            Ok((Some(record.clone()), record))
        })
        .await
    }

    async fn get(&self, tenant: &str, name: &str) -> Result<Option<FunctionRecord>, StoreError> {
        Ok(self.read(tenant, name).await?.1)
    }

    async fn list(&self, tenant: &str) -> Result<Vec<FunctionRecord>, StoreError> {
        let all: HashMap<String, String> =
            self.shared.con().hgetall(self.records_key(tenant)).await.map_err(unavailable)?;
        let mut records: Vec<FunctionRecord> =
            all.values().map(|json| serde_json::from_str(json)).collect::<Result<_, _>>().map_err(corrupt)?;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    async fn all_versions(&self) -> Result<Vec<String>, StoreError> {
        self.shared.con().smembers(self.shared.key("versions")).await.map_err(unavailable)
    }

    async fn delete(&self, tenant: &str, name: &str) -> Result<FunctionRecord, RegistryError> {
        self.update(tenant, name, |record| {
            let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
            Ok((None, record))
        })
        .await
    }
}

/// Idempotency keys in Redis, expiring with the job TTL.
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

    fn key(&self, tenant: &str, key: &str) -> String {
        // Hashed: a client's key may hold anything, and may be long.
        self.shared.key(&format!("idem:{tenant}:{}", sha256_hex(key.as_bytes())))
    }
}

#[async_trait::async_trait]
impl IdempotencyKeys for RedisIdempotencyKeys {
    async fn claim(
        &self,
        tenant: &str,
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

    async fn release(&self, tenant: &str, key: &str, id: &JobId) -> Result<(), StoreError> {
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

/// The usage log and totals in Redis.
#[derive(Debug)]
pub struct RedisUsage {
    shared: Shared,
    record: Script,
    commit: Script,
}

impl RedisUsage {
    /// Usage under `shared`'s prefix.
    pub fn new(shared: Shared) -> Self {
        Self { shared, record: Script::new(RECORD_USAGE), commit: Script::new(COMMIT_USAGE) }
    }

    fn totals_key(&self, tenant: &str) -> String {
        self.shared.key(&format!("usage:totals:{tenant}"))
    }
}

/// The stream id right after `id` (`ms-seq` → `ms-(seq+1)`).
fn next_stream_id(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let seq: u64 = seq.parse().ok()?;
    Some(format!("{ms}-{}", seq.checked_add(1)?))
}

#[async_trait::async_trait]
impl UsageLedger for RedisUsage {
    async fn record(&self, job_id: &str, tenant: &str, function: &str, usage: &Usage) -> Result<bool, StoreError> {
        let entry = UsageEntry {
            job_id: job_id.to_owned(),
            tenant: tenant.to_owned(),
            function: function.to_owned(),
            at_ms: sluice_scheduler::now_ms(),
            usage: usage.clone(),
        };
        let logged: i64 = self
            .record
            .key(self.shared.key(&format!("usage:seen:{job_id}")))
            .key(self.shared.key("usage:log"))
            .arg(u64::try_from(USAGE_SEEN_TTL.as_millis()).unwrap_or(u64::MAX))
            .arg(serde_json::to_string(&entry).map_err(corrupt)?)
            .invoke_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        Ok(logged == 1)
    }

    async fn pending(&self, limit: usize) -> Result<UsageBatch, StoreError> {
        let mut con = self.shared.con();
        let from: Option<String> = con.get(self.shared.key("usage:cursor")).await.map_err(unavailable)?;
        let from = from.unwrap_or_else(|| "0-0".to_owned());
        let reply: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(self.shared.key("usage:log"))
            .arg(format!("({from}"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let through = reply.last().map_or_else(|| from.clone(), |(id, _)| id.clone());
        let mut entries = Vec::with_capacity(reply.len());
        for (_, fields) in &reply {
            let json = fields.get("entry").ok_or_else(|| corrupt("a usage entry has no `entry` field"))?;
            entries.push(serde_json::from_str(json).map_err(corrupt)?);
        }
        Ok(UsageBatch { entries, from, through })
    }

    async fn commit(&self, batch: &UsageBatch, deltas: &[Bucket]) -> Result<(), CommitError> {
        let trim_below = next_stream_id(&batch.through).ok_or_else(|| corrupt(&batch.through))?;
        let mut invocation = self.commit.prepare_invoke();
        invocation
            .key(self.shared.key("usage:cursor"))
            .key(self.shared.key("usage:log"))
            .arg(&batch.from)
            .arg(&batch.through)
            .arg(trim_below)
            .arg(deltas.len());
        for delta in deltas {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            invocation
                .key(self.totals_key(&delta.tenant))
                .arg(format!("{}|{}", delta.hour_ms, delta.function))
                .arg(count(delta.invocations))
                .arg(count(delta.failures))
                .arg(count(delta.cpu_us))
                .arg(count(delta.wall_us))
                .arg(count(delta.bytes_in))
                .arg(count(delta.bytes_out))
                .arg(count(delta.cost_micros));
        }
        let committed: i64 = invocation.invoke_async(&mut self.shared.con()).await.map_err(unavailable)?;
        if committed == 1 { Ok(()) } else { Err(CommitError::AlreadyAggregated) }
    }

    async fn totals(&self, tenant: &str, from_ms: u64, to_ms: u64) -> Result<Vec<Bucket>, StoreError> {
        let fields: HashMap<String, i64> =
            self.shared.con().hgetall(self.totals_key(tenant)).await.map_err(unavailable)?;
        let mut buckets: HashMap<(u64, String), Bucket> = HashMap::new();
        for (field, value) in fields {
            let mut parts = field.splitn(3, '|');
            let (Some(hour), Some(function), Some(metric)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(hour_ms) = hour.parse::<u64>() else { continue };
            let bucket = buckets.entry((hour_ms, function.to_owned())).or_insert_with(|| Bucket {
                tenant: tenant.to_owned(),
                function: function.to_owned(),
                hour_ms,
                ..Bucket::default()
            });
            let value = u64::try_from(value).unwrap_or(0);
            match metric {
                "invocations" => bucket.invocations = value,
                "failures" => bucket.failures = value,
                "cpu_us" => bucket.cpu_us = value,
                "wall_us" => bucket.wall_us = value,
                "bytes_in" => bucket.bytes_in = value,
                "bytes_out" => bucket.bytes_out = value,
                "cost_micros" => bucket.cost_micros = value,
                _ => {}
            }
        }
        Ok(sum_by_function(buckets.values(), tenant, from_ms, to_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_stream_id_follows_within_the_millisecond() {
        assert_eq!(next_stream_id("1700000000000-0").as_deref(), Some("1700000000000-1"));
        assert_eq!(next_stream_id("0-0").as_deref(), Some("0-1"));
        assert_eq!(next_stream_id("garbage"), None);
    }
}
