//! Deployed functions: per tenant, each name has its versions (content
//! addresses of the component bytes) and one active version. Component bytes
//! are stored once per hash under `components/`, so redeploying identical
//! bytes or rolling back costs no space.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::{StoreError, io_error, read_json, write_atomic, write_json};

/// One deployed version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    /// `sha256:<hex>` of the component.
    pub version: String,
    /// Component size in bytes.
    pub size: u64,
    /// Deployed at, ms since the epoch.
    pub deployed_at_ms: u64,
}

/// A tenant's function and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Owning tenant's id.
    pub tenant: String,
    /// The function's name.
    pub name: String,
    /// The version calls run.
    pub active: String,
    /// Every deployed version, oldest first.
    pub versions: Vec<FunctionVersion>,
}

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such function for this tenant.
    #[error("no function named {0:?}")]
    NotFound(String),
    /// The function has no such version.
    #[error("function {name:?} has no version {version:?}")]
    NoSuchVersion {
        /// Function name.
        name: String,
        /// The version asked for.
        version: String,
    },
    /// The data directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every tenant's functions, persisted in `functions.json` + `components/`.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    components: PathBuf,
    records: RwLock<Vec<FunctionRecord>>,
}

impl Registry {
    /// Loads the registry from `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let components = dir.join("components");
        std::fs::create_dir_all(&components).map_err(io_error(&components))?;
        let path = dir.join("functions.json");
        let records: Vec<FunctionRecord> = read_json(&path)?;
        Ok(Self { path, components, records: RwLock::new(records) })
    }

    fn component_path(&self, version: &str) -> PathBuf {
        self.components.join(format!("{}.wasm", version.trim_start_matches("sha256:")))
    }

    /// The bytes of `version`.
    pub fn component(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.component_path(version);
        std::fs::read(&path).map_err(io_error(&path))
    }

    /// Records a deployment of `bytes` (already validated) as `version` and
    /// makes it active. Returns the updated record and whether the version is new.
    pub fn deploy(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<(FunctionRecord, bool), StoreError> {
        let path = self.component_path(version);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        let mut records = self.records.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = sluice_scheduler::now_ms();
        let index = match records.iter().position(|r| r.tenant == tenant && r.name == name) {
            Some(index) => index,
            None => {
                records.push(FunctionRecord {
                    tenant: tenant.to_owned(),
                    name: name.to_owned(),
                    active: version.to_owned(),
                    versions: Vec::new(),
                });
                records.len() - 1
            }
        };
        let record = &mut records[index];
        let is_new = !record.versions.iter().any(|v| v.version == version);
        if is_new {
            record.versions.push(FunctionVersion {
                version: version.to_owned(),
                size: bytes.len() as u64,
                deployed_at_ms: now,
            });
        }
        record.active = version.to_owned();
        let updated = record.clone();
        write_json(&self.path, &*records)?;
        Ok((updated, is_new))
    }

    /// Makes an earlier `version` active again; `None` means the one deployed
    /// before the active one.
    pub fn rollback(&self, tenant: &str, name: &str, version: Option<&str>) -> Result<FunctionRecord, RegistryError> {
        let mut records = self.records.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let record = records
            .iter_mut()
            .find(|r| r.tenant == tenant && r.name == name)
            .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        let target = match version {
            Some(version) => record.versions.iter().find(|v| v.version == version),
            None => {
                let active = record.versions.iter().position(|v| v.version == record.active).unwrap_or(0);
                active.checked_sub(1).and_then(|i| record.versions.get(i))
            }
        };
        let target = target.ok_or_else(|| RegistryError::NoSuchVersion {
            name: name.to_owned(),
            version: version.unwrap_or("(previous)").to_owned(),
        })?;
        record.active = target.version.clone();
        let updated = record.clone();
        write_json(&self.path, &*records)?;
        Ok(updated)
    }

    /// The tenant's function called `name`.
    pub fn get(&self, tenant: &str, name: &str) -> Option<FunctionRecord> {
        let records = self.records.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        records.iter().find(|r| r.tenant == tenant && r.name == name).cloned()
    }

    /// The tenant's functions, by name.
    pub fn list(&self, tenant: &str) -> Vec<FunctionRecord> {
        let records = self.records.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut mine: Vec<_> = records.iter().filter(|r| r.tenant == tenant).cloned().collect();
        mine.sort_by(|a, b| a.name.cmp(&b.name));
        mine
    }

    /// Every version any tenant deployed (to warm the runtime at start-up).
    pub fn all_versions(&self) -> Vec<String> {
        let records = self.records.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        records.iter().flat_map(|r| r.versions.iter().map(|v| v.version.clone())).collect()
    }

    /// Removes the tenant's function. Component bytes stay (another tenant
    /// may have deployed the same bytes, and running jobs may need them).
    pub fn delete(&self, tenant: &str, name: &str) -> Result<FunctionRecord, RegistryError> {
        let mut records = self.records.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = records
            .iter()
            .position(|r| r.tenant == tenant && r.name == name)
            .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        let removed = records.remove(index);
        write_json(&self.path, &*records)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_rollback_delete_and_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = Registry::open(dir.path()).expect("open");
        let (first, new) = registry.deploy("t1", "blur", "sha256:aa", b"one").expect("deploy");
        assert!(new);
        assert_eq!(first.active, "sha256:aa");
        let (second, _) = registry.deploy("t1", "blur", "sha256:bb", b"two").expect("deploy");
        assert_eq!((second.active.as_str(), second.versions.len()), ("sha256:bb", 2));
        let (again, new) = registry.deploy("t1", "blur", "sha256:bb", b"two").expect("redeploy");
        assert!(!new);
        assert_eq!(again.versions.len(), 2);

        assert_eq!(registry.rollback("t1", "blur", None).expect("rollback").active, "sha256:aa");
        assert_eq!(registry.rollback("t1", "blur", Some("sha256:bb")).expect("rollback").active, "sha256:bb");
        assert!(matches!(registry.rollback("t1", "blur", Some("sha256:cc")), Err(RegistryError::NoSuchVersion { .. })));
        assert!(registry.get("t2", "blur").is_none(), "another tenant sees nothing");

        let reopened = Registry::open(dir.path()).expect("reopen");
        assert_eq!(reopened.get("t1", "blur").expect("kept").active, "sha256:bb");
        assert_eq!(reopened.component("sha256:aa").expect("bytes"), b"one");
        reopened.delete("t1", "blur").expect("delete");
        assert!(reopened.list("t1").is_empty());
        assert!(matches!(reopened.delete("t1", "blur"), Err(RegistryError::NotFound(_))));
    }
}
