//! Tenants and their API keys. A key is shown once, when the tenant is
//! created; only its SHA-256 is stored, so a leaked data directory (or
//! Redis dump) leaks no credentials. The same holds for the admin token.

use serde::{Deserialize, Serialize};
use sluice_core::TenantId;

use super::{StoreError, random_hex, sha256_hex};

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Stable id (`t_` + 16 hex digits); functions, jobs and usage are keyed by it.
    pub id: TenantId,
    /// The unique name it was created with.
    pub name: String,
    /// SHA-256 of its API key.
    pub key_sha256: String,
    /// Created at, ms since the epoch.
    pub created_at_ms: u64,
}

/// Where tenants and the admin token's hash are kept.
///
/// Every backend keeps only hashes of keys and of the admin token, and
/// keeps tenants and the admin token across a restart.
#[async_trait::async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates a tenant; returns it and its API key (the only time the key
    /// exists in clear). Refuses an invalid or taken name.
    async fn create(&self, name: &str) -> Result<(Tenant, String), TenantError>;

    /// The tenant whose API key is `key`.
    async fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError>;

    /// Sets up the admin token: `Some(token)` from the operator replaces the
    /// stored hash; `None` keeps a stored one, or generates a token and
    /// returns it so it can be shown once.
    async fn configure_admin(&self, token: Option<&str>) -> Result<Option<String>, StoreError>;

    /// True when `token` is the admin token.
    async fn is_admin(&self, token: &str) -> Result<bool, StoreError>;
}

/// A new tenant and its key, after checking the name.
pub(crate) fn new_tenant(name: &str) -> Result<(Tenant, String), TenantError> {
    if !crate::platform::valid_name(name) {
        return Err(TenantError::InvalidName(name.to_owned()));
    }
    let key = format!("sk_{}", random_hex(24));
    let tenant = Tenant {
        id: TenantId(format!("t_{}", random_hex(8))),
        name: name.to_owned(),
        key_sha256: sha256_hex(key.as_bytes()),
        created_at_ms: sluice_scheduler::now_ms(),
    };
    Ok((tenant, key))
}

/// A fresh admin token and its hash.
pub(crate) fn new_admin_token() -> (String, String) {
    let token = format!("adm_{}", random_hex(24));
    let hash = sha256_hex(token.as_bytes());
    (token, hash)
}

/// Why a tenant could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
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
            Self::InvalidName(_) => sluice_core::ErrorCode::InvalidRequest,
            Self::NameTaken(_) => sluice_core::ErrorCode::Conflict,
            Self::Store(err) => err.code(),
        }
    }
}
