//! Tenants in `tenants.json` (rewritten whole on each change), indexed by
//! key hash in memory.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::{read_json, write_json};
use crate::store::StoreError;
use crate::store::sha256_hex;
use crate::store::tenants::{Changed, Tenant, TenantChange, TenantError, TenantStore, new_admin_token, new_tenant};
use sluice_scheduler::now_ms;

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

#[derive(Debug, Default, Clone)]
struct State {
    /// By name, so listing is in name order.
    tenants: BTreeMap<String, Tenant>,
    /// Key hash → tenant name.
    by_key: HashMap<String, String>,
    admin_token_sha256: Option<String>,
}

impl State {
    fn index(tenants: &BTreeMap<String, Tenant>) -> HashMap<String, String> {
        tenants.values().flat_map(|t| t.keys.iter().map(|k| (k.sha256.clone(), t.name.clone()))).collect()
    }
}

impl LocalTenants {
    /// Loads `tenants.json` from `dir` (empty when it does not exist).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("tenants.json");
        let file: File = read_json(&path)?;
        let tenants: BTreeMap<String, Tenant> = file.tenants.into_iter().map(|t| (t.name.clone(), t)).collect();
        let by_key = State::index(&tenants);
        let state = State { tenants, by_key, admin_token_sha256: file.admin_token_sha256 };
        Ok(Self { path, state: RwLock::new(state) })
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let file = File {
            tenants: state.tenants.values().cloned().collect(),
            admin_token_sha256: state.admin_token_sha256.clone(),
        };
        write_json(&self.path, &file)
    }

    /// Applies `edit` to the state and saves it; on a failed save the state
    /// is left as it was.
    fn update<T, E: From<StoreError>>(&self, edit: impl FnOnce(&mut State) -> Result<T, E>) -> Result<T, E> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = state.clone();
        let value = edit(&mut next)?;
        self.save(&next)?;
        *state = next;
        Ok(value)
    }
}

#[async_trait::async_trait]
impl TenantStore for LocalTenants {
    async fn create(&self, name: &str) -> Result<(Tenant, String), TenantError> {
        let (tenant, key) = new_tenant(name)?;
        self.update(|state| {
            if state.tenants.contains_key(name) {
                return Err(TenantError::NameTaken(name.to_owned()));
            }
            for api_key in &tenant.keys {
                state.by_key.insert(api_key.sha256.clone(), tenant.name.clone());
            }
            state.tenants.insert(tenant.name.clone(), tenant.clone());
            Ok(())
        })?;
        Ok((tenant, key))
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        let hash = sha256_hex(key.as_bytes());
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let tenant = state.by_key.get(&hash).and_then(|name| state.tenants.get(name));
        Ok(tenant.filter(|t| t.accepts(&hash, now_ms())).cloned())
    }

    async fn get(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        Ok(self.state.read().unwrap_or_else(PoisonError::into_inner).tenants.get(name).cloned())
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Tenant>, StoreError> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let from = after.map_or(Bound::Unbounded, |name| Bound::Excluded(name.to_owned()));
        Ok(state.tenants.range((from, Bound::Unbounded)).take(limit).map(|(_, t)| t.clone()).collect())
    }

    async fn change(&self, name: &str, change: &TenantChange) -> Result<Changed, TenantError> {
        self.update(|state| {
            let tenant = state.tenants.get(name).cloned().ok_or_else(|| TenantError::NotFound(name.to_owned()))?;
            let changed = change.apply(tenant, now_ms())?;
            for hash in &changed.removed {
                state.by_key.remove(hash);
            }
            for hash in &changed.added {
                state.by_key.insert(hash.clone(), name.to_owned());
            }
            state.tenants.insert(name.to_owned(), changed.tenant.clone());
            Ok(changed)
        })
    }

    async fn delete(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.update::<_, StoreError>(|state| {
            let Some(tenant) = state.tenants.remove(name) else { return Ok(None) };
            for key in &tenant.keys {
                state.by_key.remove(&key.sha256);
            }
            Ok(Some(tenant))
        })
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
