//! Tenants and their API keys. A key is shown once, when the tenant is
//! created; only its SHA-256 is stored, so a leaked data directory (or
//! Redis dump) leaks no credentials.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::{StoreError, random_hex, read_json, sha256_hex, write_json};

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Stable id (`t_` + 16 hex digits); functions, jobs and usage are keyed by it.
    pub id: String,
    /// The unique name it was created with.
    pub name: String,
    /// SHA-256 of its API key.
    pub key_sha256: String,
    /// Created at, ms since the epoch.
    pub created_at_ms: u64,
}

/// Where tenants and the admin token's hash are kept.
#[async_trait::async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates a tenant; returns it and its API key (the only time the key exists in clear).
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
        id: format!("t_{}", random_hex(8)),
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
    /// The data directory failed.
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

#[derive(Default, Serialize, Deserialize)]
struct File {
    tenants: Vec<Tenant>,
    admin_token_sha256: Option<String>,
}

/// Tenants in `tenants.json`, indexed by key hash in memory.
#[derive(Debug)]
pub struct LocalTenants {
    path: PathBuf,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    tenants: Vec<Tenant>,
    by_key: HashMap<String, usize>,
    admin_token_sha256: Option<String>,
}

impl LocalTenants {
    /// Loads `tenants.json` from `dir` (empty when it does not exist).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("tenants.json");
        let file: File = read_json(&path)?;
        let by_key = file.tenants.iter().enumerate().map(|(i, t)| (t.key_sha256.clone(), i)).collect();
        let state = State { tenants: file.tenants, by_key, admin_token_sha256: file.admin_token_sha256 };
        Ok(Self { path, state: RwLock::new(state) })
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let file = File { tenants: state.tenants.clone(), admin_token_sha256: state.admin_token_sha256.clone() };
        write_json(&self.path, &file)
    }
}

#[async_trait::async_trait]
impl TenantStore for LocalTenants {
    async fn create(&self, name: &str) -> Result<(Tenant, String), TenantError> {
        let (tenant, key) = new_tenant(name)?;
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.tenants.iter().any(|t| t.name == name) {
            return Err(TenantError::NameTaken(name.to_owned()));
        }
        let index = state.tenants.len();
        state.by_key.insert(tenant.key_sha256.clone(), index);
        state.tenants.push(tenant.clone());
        if let Err(err) = self.save(&state) {
            state.tenants.pop();
            state.by_key.remove(&tenant.key_sha256);
            return Err(err.into());
        }
        Ok((tenant, key))
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(state.by_key.get(&sha256_hex(key.as_bytes())).map(|&i| state.tenants[i].clone()))
    }

    async fn configure_admin(&self, token: Option<&str>) -> Result<Option<String>, StoreError> {
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (hash, generated) = match token {
            Some(token) => (sha256_hex(token.as_bytes()), None),
            None => match &state.admin_token_sha256 {
                Some(hash) => (hash.clone(), None),
                None => {
                    let (token, hash) = new_admin_token();
                    (hash, Some(token))
                }
            },
        };
        if state.admin_token_sha256.as_deref() != Some(hash.as_str()) {
            state.admin_token_sha256 = Some(hash);
            self.save(&state)?;
        }
        Ok(generated)
    }

    async fn is_admin(&self, token: &str) -> Result<bool, StoreError> {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(state.admin_token_sha256.as_deref() == Some(sha256_hex(token.as_bytes()).as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_authenticate_and_survive_a_reopen_as_hashes_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tenants = LocalTenants::open(dir.path()).expect("open");
        let (acme, key) = tenants.create("acme").await.expect("create");
        assert_eq!(tenants.authenticate(&key).await.expect("auth"), Some(acme.clone()));
        assert_eq!(tenants.authenticate("sk_wrong").await.expect("auth"), None);
        assert!(matches!(tenants.create("acme").await, Err(TenantError::NameTaken(_))));
        assert!(matches!(tenants.create("Bad Name").await, Err(TenantError::InvalidName(_))));

        let on_disk = std::fs::read_to_string(dir.path().join("tenants.json")).expect("file");
        assert!(!on_disk.contains(&key), "the key itself must never be stored");
        let reopened = LocalTenants::open(dir.path()).expect("reopen");
        assert_eq!(reopened.authenticate(&key).await.expect("auth"), Some(acme));
    }

    #[tokio::test]
    async fn a_generated_admin_token_is_shown_once_and_kept_as_a_hash() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tenants = LocalTenants::open(dir.path()).expect("open");
        let token = tenants.configure_admin(None).await.expect("configure").expect("generated");
        assert!(tenants.is_admin(&token).await.expect("check"));
        let reopened = LocalTenants::open(dir.path()).expect("reopen");
        assert_eq!(reopened.configure_admin(None).await.expect("configure"), None, "not regenerated");
        assert!(reopened.is_admin(&token).await.expect("check"));
        reopened.configure_admin(Some("operator-set")).await.expect("configure");
        assert!(reopened.is_admin("operator-set").await.expect("check"));
        assert!(!reopened.is_admin(&token).await.expect("check"));
    }
}
