//! Tenants, their API keys and their limits. A key is shown once, when it
//! is made (with the tenant, or by a rotation); only its SHA-256 is
//! stored, so a leaked data directory (or Redis dump) leaks no
//! credentials. The same holds for the admin token. Rotation gives the
//! keys it replaces a grace period; revocation ends a key at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::{TenantId, whole_number};

use super::{StoreError, random_hex, sha256_hex};

/// API keys a tenant may hold at once (the current one plus keys still in
/// their grace period); one more rotation is refused until one expires or
/// is revoked.
pub const MAX_KEYS: usize = 10;

/// The longest grace period a rotated-out key may get: 30 days.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredTenant")]
pub struct Tenant {
    /// Stable id (`t_` + 16 hex digits); functions, jobs and usage are keyed by it.
    pub id: TenantId,
    /// The unique name it was created with.
    pub name: String,
    /// Its API keys: the current one, and rotated-out ones until they expire.
    pub keys: Vec<ApiKey>,
    /// Created at, ms since the epoch.
    pub created_at_ms: u64,
    /// The limits an operator set for it; unset ones are the node's.
    #[serde(default, skip_serializing_if = "TenantLimits::is_empty")]
    pub limits: TenantLimits,
}

/// A tenant as stored: records written before keys could be rotated name
/// their one key by `key_sha256`.
#[derive(Deserialize)]
struct StoredTenant {
    id: TenantId,
    name: String,
    #[serde(default)]
    keys: Vec<ApiKey>,
    #[serde(default)]
    key_sha256: Option<String>,
    created_at_ms: u64,
    #[serde(default)]
    limits: TenantLimits,
}

impl From<StoredTenant> for Tenant {
    fn from(stored: StoredTenant) -> Self {
        let mut keys = stored.keys;
        if let Some(sha256) = stored.key_sha256.filter(|_| keys.is_empty()) {
            keys.push(ApiKey::new(sha256, stored.created_at_ms));
        }
        Self { id: stored.id, name: stored.name, keys, created_at_ms: stored.created_at_ms, limits: stored.limits }
    }
}

/// One API key of a tenant, by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Names the key for revocation (`k_` + the first 12 hex digits of its
    /// hash): safe to show, since it is derived from the hash, not the key.
    pub id: String,
    /// SHA-256 of the key.
    pub sha256: String,
    /// Created at, ms since the epoch.
    pub created_at_ms: u64,
    /// When it stops working (ms since the epoch): set when a rotation
    /// gives it a grace period; none while it is current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl ApiKey {
    fn new(sha256: String, created_at_ms: u64) -> Self {
        Self { id: format!("k_{}", &sha256[..12.min(sha256.len())]), sha256, created_at_ms, expires_at_ms: None }
    }

    /// True while the key authenticates at `now_ms`.
    pub fn is_valid_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|expires| now_ms < expires)
    }
}

/// Limits an operator set for one tenant, applied by every node; each one
/// left unset is the node's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Sustained requests a second (1 to 100 000).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole_number::optional")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub rate_per_second: Option<u32>,
    /// Requests allowed in a burst above the rate (1 to 1 000 000).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole_number::optional")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub burst: Option<u32>,
    /// Jobs that may run at once (1 to 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole_number::optional")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub running: Option<u32>,
    /// Jobs that may wait at once (1 to 10 000 000; the queue's capacity
    /// still bounds every tenant together).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole_number::optional")]
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub queued: Option<u32>,
    /// Memory one call may use, MiB (1 to 65 536; a node never gives more
    /// than its own limit).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole_number::optional")]
    #[schema(minimum = 1, maximum = 65_536)]
    pub memory_mb: Option<u32>,
    /// How long one call may run, ms (1 to 3 600 000; a node never gives
    /// more than its own limit).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole_number::optional")]
    #[schema(minimum = 1, maximum = 3_600_000)]
    pub timeout_ms: Option<u64>,
}

impl TenantLimits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Refuses a limit out of its range, naming it.
    pub fn validate(&self) -> Result<(), TenantError> {
        let check = |name: &'static str, value: Option<u64>, max: u64| match value {
            Some(value) if !(1..=max).contains(&value) => Err(TenantError::InvalidLimit { name, max }),
            _ => Ok(()),
        };
        check("rate_per_second", self.rate_per_second.map(u64::from), 100_000)?;
        check("burst", self.burst.map(u64::from), 1_000_000)?;
        check("running", self.running.map(u64::from), 10_000)?;
        check("queued", self.queued.map(u64::from), 10_000_000)?;
        check("memory_mb", self.memory_mb.map(u64::from), 65_536)?;
        check("timeout_ms", self.timeout_ms, 3_600_000)
    }

    /// What the queue and the worker apply to each of the tenant's jobs.
    pub fn for_jobs(&self) -> sluice_scheduler::TenantLimits {
        sluice_scheduler::TenantLimits {
            running: self.running,
            queued: self.queued,
            memory_bytes: self.memory_mb.map(|mb| u64::from(mb) * 1024 * 1024),
            timeout_ms: self.timeout_ms,
        }
    }
}

impl Tenant {
    /// True when `key_sha256` is one of its keys and still valid at `now_ms`.
    pub fn accepts(&self, key_sha256: &str, now_ms: u64) -> bool {
        self.keys.iter().any(|key| key.sha256 == key_sha256 && key.is_valid_at(now_ms))
    }

    /// Drops keys that expired before `now_ms`; returns their hashes.
    fn drop_expired(&mut self, now_ms: u64) -> Vec<String> {
        let (kept, expired): (Vec<ApiKey>, Vec<ApiKey>) =
            std::mem::take(&mut self.keys).into_iter().partition(|key| key.is_valid_at(now_ms));
        self.keys = kept;
        expired.into_iter().map(|key| key.sha256).collect()
    }
}

/// A change to one tenant's record, applied the same way by every backend
/// to the record as it is at the moment of the change.
#[derive(Debug, Clone)]
pub enum TenantChange {
    /// Adds a new current key; the keys current until now keep working
    /// for `grace`, then stop.
    RotateKey {
        /// How long the keys rotated out keep working.
        grace: Duration,
    },
    /// Revokes the key with this id at once.
    RevokeKey(String),
    /// Replaces the tenant's limits.
    SetLimits(TenantLimits),
}

/// A changed tenant record and the key-index changes that go with it.
#[derive(Debug, Clone)]
pub struct Changed {
    /// The record after the change.
    pub tenant: Tenant,
    /// A new key in clear (rotation only; shown once).
    pub new_key: Option<String>,
    /// Key hashes to add to the index.
    pub added: Vec<String>,
    /// Key hashes to drop from the index (revoked or expired).
    pub removed: Vec<String>,
}

impl TenantChange {
    /// Applies the change to `tenant` at `now_ms`; expired keys are dropped
    /// on the way.
    pub fn apply(&self, mut tenant: Tenant, now_ms: u64) -> Result<Changed, TenantError> {
        let mut removed = tenant.drop_expired(now_ms);
        let mut added = Vec::new();
        let mut new_key = None;
        match self {
            Self::RotateKey { grace } => {
                if *grace > MAX_GRACE {
                    return Err(TenantError::GraceTooLong(*grace));
                }
                if tenant.keys.len() >= MAX_KEYS {
                    return Err(TenantError::TooManyKeys(tenant.name.clone()));
                }
                let expires = now_ms.saturating_add(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
                for key in &mut tenant.keys {
                    key.expires_at_ms = Some(key.expires_at_ms.map_or(expires, |at| at.min(expires)));
                }
                if grace.is_zero() {
                    removed.extend(tenant.drop_expired(now_ms.saturating_add(1)));
                }
                let (key, sha256) = new_key_pair();
                added.push(sha256.clone());
                tenant.keys.push(ApiKey::new(sha256, now_ms));
                new_key = Some(key);
            }
            Self::RevokeKey(id) => {
                let at = tenant
                    .keys
                    .iter()
                    .position(|key| key.id == *id)
                    .ok_or_else(|| TenantError::NoSuchKey { tenant: tenant.name.clone(), key: id.clone() })?;
                removed.push(tenant.keys.remove(at).sha256);
            }
            Self::SetLimits(limits) => {
                limits.validate()?;
                tenant.limits = *limits;
            }
        }
        Ok(Changed { tenant, new_key, added, removed })
    }
}

/// Where tenants and the admin token's hash are kept.
///
/// Every backend keeps only hashes of keys and of the admin token, and
/// keeps tenants and the admin token across a restart. A change made on
/// one node is seen by every node sharing the store within a second.
#[async_trait::async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates a tenant; returns it and its API key (the only time the key
    /// exists in clear). Refuses an invalid or taken name.
    async fn create(&self, name: &str) -> Result<(Tenant, String), TenantError>;

    /// The tenant whose API key is `key`, if the key is still valid.
    async fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError>;

    /// The tenant named `name`.
    async fn get(&self, name: &str) -> Result<Option<Tenant>, StoreError>;

    /// Up to `limit` tenants in name order, after the name `after`.
    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Tenant>, StoreError>;

    /// Applies `change` to the tenant named `name`; returns the result.
    async fn change(&self, name: &str, change: &TenantChange) -> Result<Changed, TenantError>;

    /// Deletes the tenant named `name` and every key of it; returns it.
    async fn delete(&self, name: &str) -> Result<Option<Tenant>, StoreError>;

    /// Sets up the admin token: `Some(token)` from the operator replaces the
    /// stored hash; `None` keeps a stored one, or generates a token and
    /// returns it so it can be shown once.
    async fn configure_admin(&self, token: Option<&str>) -> Result<Option<String>, StoreError>;

    /// True when `token` is the admin token.
    async fn is_admin(&self, token: &str) -> Result<bool, StoreError>;
}

/// A fresh API key and its hash.
fn new_key_pair() -> (String, String) {
    let key = format!("sk_{}", random_hex(24));
    let sha256 = sha256_hex(key.as_bytes());
    (key, sha256)
}

/// A new tenant and its key, after checking the name.
pub(crate) fn new_tenant(name: &str) -> Result<(Tenant, String), TenantError> {
    if !crate::platform::valid_name(name) {
        return Err(TenantError::InvalidName(name.to_owned()));
    }
    let (key, sha256) = new_key_pair();
    let created_at_ms = sluice_scheduler::now_ms();
    let tenant = Tenant {
        id: TenantId(format!("t_{}", random_hex(8))),
        name: name.to_owned(),
        keys: vec![ApiKey::new(sha256, created_at_ms)],
        created_at_ms,
        limits: TenantLimits::default(),
    };
    Ok((tenant, key))
}

/// A fresh admin token and its hash.
pub(crate) fn new_admin_token() -> (String, String) {
    let token = format!("adm_{}", random_hex(24));
    let hash = sha256_hex(token.as_bytes());
    (token, hash)
}

/// Why a tenant could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No tenant has that name.
    #[error("no tenant is named {0:?}")]
    NotFound(String),
    /// The tenant has no key with that id.
    #[error("tenant {tenant:?} has no key {key:?}")]
    NoSuchKey {
        /// The tenant's name.
        tenant: String,
        /// The key id asked for.
        key: String,
    },
    /// The tenant holds as many keys as allowed.
    #[error("tenant {0:?} already holds {MAX_KEYS} keys; revoke one, or let one expire, first")]
    TooManyKeys(String),
    /// A grace period longer than allowed.
    #[error("a grace period is at most {}s, got {}s", MAX_GRACE.as_secs(), .0.as_secs())]
    GraceTooLong(Duration),
    /// A limit out of its range.
    #[error("`{name}` must be between 1 and {max}")]
    InvalidLimit {
        /// The limit's name.
        name: &'static str,
        /// Its largest value.
        max: u64,
    },
    /// The name is not 1–64 characters of `a-z`, `0-9`, `-`, `_`.
    #[error("a tenant name is 1 to 64 characters of a-z, 0-9, '-' and '_', got {0:?}")]
    InvalidName(String),
    /// The name is taken.
    #[error("a tenant named {0:?} already exists")]
    NameTaken(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TenantError {
    /// The stable code callers see for this failure.
    pub fn code(&self) -> sluice_core::ErrorCode {
        match self {
            Self::InvalidName(_) | Self::GraceTooLong(_) | Self::InvalidLimit { .. } => {
                sluice_core::ErrorCode::InvalidRequest
            }
            Self::NotFound(_) | Self::NoSuchKey { .. } => sluice_core::ErrorCode::NotFound,
            Self::NameTaken(_) | Self::TooManyKeys(_) => sluice_core::ErrorCode::Conflict,
            Self::Store(err) => err.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_from_before_rotation_reads_with_its_one_key() {
        let old =
            r#"{"id":"t_0123456789abcdef","name":"acme","key_sha256":"ab12cd34ef56ab12cd34ef56","created_at_ms":7}"#;
        let tenant: Tenant = serde_json::from_str(old).expect("parses");
        assert_eq!(
            tenant.keys,
            [ApiKey {
                id: "k_ab12cd34ef56".into(),
                sha256: "ab12cd34ef56ab12cd34ef56".into(),
                created_at_ms: 7,
                expires_at_ms: None
            }]
        );
        assert!(tenant.accepts("ab12cd34ef56ab12cd34ef56", u64::MAX));
        assert_eq!(tenant.limits, TenantLimits::default());
        let again: Tenant = serde_json::from_str(&serde_json::to_string(&tenant).expect("writes")).expect("parses");
        assert_eq!(again, tenant, "written in the new form, read back the same");
    }

    #[test]
    fn a_rotation_caps_earlier_grace_periods_and_never_extends_them() {
        let (tenant, _) = new_tenant("acme").expect("valid");
        let long = TenantChange::RotateKey { grace: Duration::from_secs(100) }.apply(tenant, 1_000).expect("rotated");
        let short =
            TenantChange::RotateKey { grace: Duration::from_secs(10) }.apply(long.tenant, 2_000).expect("rotated");
        let ends: Vec<Option<u64>> = short.tenant.keys.iter().map(|k| k.expires_at_ms).collect();
        assert_eq!(ends, [Some(12_000), Some(12_000), None]);
        let again =
            TenantChange::RotateKey { grace: Duration::from_secs(100) }.apply(short.tenant, 3_000).expect("rotated");
        let ends: Vec<Option<u64>> = again.tenant.keys.iter().map(|k| k.expires_at_ms).collect();
        assert_eq!(ends, [Some(12_000), Some(12_000), Some(103_000), None], "a later, longer grace extends nothing");
    }
}
