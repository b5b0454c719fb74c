//! Tenants in `tenants.json`, indexed by key hash in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::{read_json, write_json};
use crate::store::StoreError;
use crate::store::sha256_hex;
use crate::store::tenants::{Tenant, TenantError, TenantStore, new_admin_token, new_tenant};

#[derive(Default, Serialize, Deserialize)]
struct File {
    tenants: Vec<Tenant>,
    admin_token_sha256: Option<String>,
}

/// Tenants of one data directory.
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
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
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
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(state.by_key.get(&sha256_hex(key.as_bytes())).map(|&i| state.tenants[i].clone()))
    }

    async fn configure_admin(&self, token: Option<&str>) -> Result<Option<String>, StoreError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
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
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(state.admin_token_sha256.as_deref() == Some(sha256_hex(token.as_bytes()).as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_file_is_refused_rather_than_read_as_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tenants.json");
        std::fs::write(&path, "{\"tenants\": [").expect("written");
        let err = LocalTenants::open(dir.path()).expect_err("corrupt");
        assert!(matches!(&err, StoreError::Corrupt { path: corrupt, .. } if *corrupt == path), "{err:?}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "{\"tenants\": [", "left for the operator");
    }
}
