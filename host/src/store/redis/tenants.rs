//! Tenants in Redis: by name (so names are unique, and the record is the
//! one source of its keys and limits) and by key hash (so a key finds its
//! tenant in one lookup).
//!
//! Each process caches authenticated keys. Every change publishes the
//! tenant's name, and a subscriber in each process empties its cache on
//! every notice, and whenever it is not listening (a notice may have been
//! missed), so a revoked key stops working on every node within a round
//! trip. A key past its grace period stops by its own expiry time, cached
//! or not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{AsyncCommands, Script};
use sluice_scheduler::now_ms;

use super::{Shared, corrupt, unavailable};
use crate::store::StoreError;
use crate::store::sha256_hex;
use crate::store::tenants::{Changed, Tenant, TenantChange, TenantError, TenantStore, new_admin_token, new_tenant};

/// How long an authenticated key is trusted without asking Redis again,
/// while change notices are being received (without them, not at all).
const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);

/// Keys cached per process at most; past it the cache starts over.
const AUTH_CACHE_ENTRIES: usize = 100_000;

/// Times a change is retried when another node changed the same tenant
/// between reading and writing it.
const CHANGE_ATTEMPTS: usize = 16;

/// Creates a tenant unless its name is taken.
const CREATE_TENANT: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
";

/// The tenant record a key hash names (ARGV[1]); index entries written
/// before rotation hold the tenant's JSON rather than its name.
const AUTHENTICATE: &str = r"
local name = redis.call('HGET', KEYS[2], ARGV[1])
if not name then return false end
if string.sub(name, 1, 1) == '{' then name = cjson.decode(name)['name'] end
return redis.call('HGET', KEYS[1], name)
";

/// Replaces tenant ARGV[1]'s record if it is still ARGV[2]: with ARGV[3]
/// (or deletes it when ARGV[3] is empty); ARGV[4] key hashes follow to add
/// to the index, then the hashes to drop. Publishes the name on KEYS[3].
const CHANGE_TENANT: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
local added = tonumber(ARGV[4])
for i = 5, 4 + added do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
for i = 5 + added, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1
";

/// Tenants in Redis, with recently authenticated keys cached in the process.
#[derive(Debug)]
pub struct RedisTenants {
    shared: Shared,
    create: Script,
    authenticate: Script,
    change: Script,
    cache: Arc<AuthCache>,
    subscriber: tokio::task::JoinHandle<()>,
}

/// Authenticated keys of this process, trusted only while change notices
/// arrive.
#[derive(Debug, Default)]
struct AuthCache {
    entries: Mutex<HashMap<String, (Tenant, Instant)>>,
    /// True while subscribed to change notices.
    listening: AtomicBool,
    /// Bumped on every notice, so a lookup that raced with one is not cached.
    generation: AtomicU64,
}

impl AuthCache {
    fn get(&self, hash: &str) -> Option<Tenant> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (tenant, at) = entries.get(hash)?;
        (at.elapsed() < AUTH_CACHE_TTL).then(|| tenant.clone())
    }

    fn put(&self, hash: String, tenant: Tenant, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != generation || !self.listening.load(Ordering::Acquire) {
            return;
        }
        if entries.len() >= AUTH_CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, (tenant, Instant::now()));
    }

    fn forget_all(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

impl Drop for RedisTenants {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl RedisTenants {
    /// Tenants under `shared`'s prefix; starts this process's subscriber to
    /// change notices.
    pub fn new(shared: Shared) -> Self {
        let cache = Arc::new(AuthCache::default());
        let subscriber = tokio::spawn(listen(shared.client.clone(), shared.key("tenant-changes"), Arc::clone(&cache)));
        Self {
            shared,
            create: Script::new(CREATE_TENANT),
            authenticate: Script::new(AUTHENTICATE),
            change: Script::new(CHANGE_TENANT),
            cache,
            subscriber,
        }
    }

    /// The stored JSON of tenant `name`.
    async fn stored(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.shared.con().hget(self.shared.key("tenants"), name).await.map_err(unavailable)
    }

    /// Writes `next` (`None`: deletes) over tenant `name`'s record if it is
    /// still `current`; false when another node changed it first.
    async fn replace(
        &self,
        name: &str,
        current: &str,
        next: Option<&Tenant>,
        added: &[String],
        removed: &[String],
    ) -> Result<bool, StoreError> {
        let next = next.map(serde_json::to_string).transpose().map_err(corrupt)?.unwrap_or_default();
        let replaced: i64 = self
            .change
            .key(self.shared.key("tenants"))
            .key(self.shared.key("tenant-keys"))
            .key(self.shared.key("tenant-changes"))
            .arg(name)
            .arg(current)
            .arg(next)
            .arg(added.len())
            .arg(added)
            .arg(removed)
            .invoke_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        Ok(replaced == 1)
    }
}

/// Empties `cache` on every change notice; while not subscribed (Redis
/// down, a reconnect) the cache is not used at all.
async fn listen(client: redis::Client, channel: String, cache: Arc<AuthCache>) {
    use futures_util::StreamExt;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    // Whatever changed while not listening is unknown.
                    cache.forget_all();
                    cache.listening.store(true, Ordering::Release);
                    let mut notices = pubsub.on_message();
                    while notices.next().await.is_some() {
                        cache.forget_all();
                    }
                }
            }
            Err(err) => tracing::warn!(cause = %err, "tenant-change subscriber cannot connect; retrying"),
        }
        cache.listening.store(false, Ordering::Release);
        cache.forget_all();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn parse(json: &str) -> Result<Tenant, StoreError> {
    serde_json::from_str(json).map_err(corrupt)
}

#[async_trait::async_trait]
impl TenantStore for RedisTenants {
    async fn create(&self, name: &str) -> Result<(Tenant, String), TenantError> {
        let (tenant, key) = new_tenant(name)?;
        let json = serde_json::to_string(&tenant).map_err(corrupt)?;
        let hash = tenant.keys.first().map(|k| k.sha256.clone()).unwrap_or_default();
        let created: i64 = self
            .create
            .key(self.shared.key("tenants"))
            .key(self.shared.key("tenant-keys"))
            .arg(name)
            .arg(hash)
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
        if let Some(tenant) = self.cache.get(&hash) {
            return Ok(tenant.accepts(&hash, now_ms()).then_some(tenant));
        }
        let generation = self.cache.generation.load(Ordering::Acquire);
        let json: Option<String> = self
            .authenticate
            .key(self.shared.key("tenants"))
            .key(self.shared.key("tenant-keys"))
            .arg(&hash)
            .invoke_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        let Some(tenant) = json.as_deref().map(parse).transpose()? else { return Ok(None) };
        if !tenant.accepts(&hash, now_ms()) {
            return Ok(None);
        }
        self.cache.put(hash, tenant.clone(), generation);
        Ok(Some(tenant))
    }

    async fn get(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.stored(name).await?.as_deref().map(parse).transpose()
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Tenant>, StoreError> {
        let mut names: Vec<String> = self.shared.con().hkeys(self.shared.key("tenants")).await.map_err(unavailable)?;
        names.retain(|name| after.is_none_or(|after| name.as_str() > after));
        names.sort_unstable();
        names.truncate(limit);
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.shared.key("tenants"))
            .arg(&names)
            .query_async(&mut self.shared.con())
            .await
            .map_err(unavailable)?;
        // A tenant deleted between the two reads is left out.
        records.iter().flatten().map(|json| parse(json)).collect()
    }

    async fn change(&self, name: &str, change: &TenantChange) -> Result<Changed, TenantError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let current = self.stored(name).await?.ok_or_else(|| TenantError::NotFound(name.to_owned()))?;
            let changed = change.apply(parse(&current)?, now_ms())?;
            if self.replace(name, &current, Some(&changed.tenant), &changed.added, &changed.removed).await? {
                self.cache.forget_all();
                return Ok(changed);
            }
        }
        Err(StoreError::Unavailable(format!("tenant {name:?} kept changing under this change; retry")).into())
    }

    async fn delete(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let Some(current) = self.stored(name).await? else { return Ok(None) };
            let tenant = parse(&current)?;
            let keys: Vec<String> = tenant.keys.iter().map(|k| k.sha256.clone()).collect();
            if self.replace(name, &current, None, &[], &keys).await? {
                self.cache.forget_all();
                return Ok(Some(tenant));
            }
        }
        Err(StoreError::Unavailable(format!("tenant {name:?} kept changing while being deleted; retry")))
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
