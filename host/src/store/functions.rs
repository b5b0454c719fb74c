//! Deployed functions: per tenant, each name has its versions (content
//! addresses of the component bytes) and one active version. Component bytes
//! are stored once per hash, so redeploying identical bytes or rolling back
//! costs no space. Both backends apply the same record changes
//! ([`with_deployment`], [`with_rollback`]); they differ only in where the
//! record and bytes live.

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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// The stable code callers see for this failure.
    pub fn code(&self) -> sluice_core::ErrorCode {
        match self {
            Self::NotFound(_) | Self::NoSuchVersion { .. } => sluice_core::ErrorCode::NotFound,
            Self::Store(err) => err.code(),
        }
    }
}

/// Where function records and component bytes are kept.
#[async_trait::async_trait]
pub trait FunctionStore: Send + Sync {
    /// The bytes of `version`.
    async fn component(&self, version: &str) -> Result<Vec<u8>, StoreError>;

    /// Records a deployment of `bytes` (already validated) as `version` and
    /// makes it active. Returns the updated record and whether the version is new.
    async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<(FunctionRecord, bool), StoreError>;

    /// Makes an earlier `version` active again; `None` means the one deployed
    /// before the active one.
    async fn rollback(&self, tenant: &str, name: &str, version: Option<&str>) -> Result<FunctionRecord, RegistryError>;

    /// The tenant's function called `name`.
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<FunctionRecord>, StoreError>;

    /// The tenant's functions, by name.
    async fn list(&self, tenant: &str) -> Result<Vec<FunctionRecord>, StoreError>;

    /// Every version any tenant deployed (to warm the runtime at start-up).
    async fn all_versions(&self) -> Result<Vec<String>, StoreError>;

    /// Removes the tenant's function. Component bytes stay (another tenant
    /// may have deployed the same bytes, and running jobs may need them).
    async fn delete(&self, tenant: &str, name: &str) -> Result<FunctionRecord, RegistryError>;
}

/// `record` (or a new one) after deploying `version`; true when the version is new.
pub(crate) fn with_deployment(
    record: Option<FunctionRecord>,
    tenant: &str,
    name: &str,
    version: &str,
    size: u64,
) -> (FunctionRecord, bool) {
    let mut record = record.unwrap_or_else(|| FunctionRecord {
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        active: version.to_owned(),
        versions: Vec::new(),
    });
    let is_new = !record.versions.iter().any(|v| v.version == version);
    if is_new {
        record.versions.push(FunctionVersion {
            version: version.to_owned(),
            size,
            deployed_at_ms: sluice_scheduler::now_ms(),
        });
    }
    record.active = version.to_owned();
    (record, is_new)
}

/// `record` with `version` (or the one before the active one) active again.
pub(crate) fn with_rollback(
    mut record: FunctionRecord,
    version: Option<&str>,
) -> Result<FunctionRecord, RegistryError> {
    let target = match version {
        Some(version) => record.versions.iter().find(|v| v.version == version),
        None => {
            let active = record.versions.iter().position(|v| v.version == record.active).unwrap_or(0);
            active.checked_sub(1).and_then(|i| record.versions.get(i))
        }
    };
    let target = target.ok_or_else(|| RegistryError::NoSuchVersion {
        name: record.name.clone(),
        version: version.unwrap_or("(previous)").to_owned(),
    })?;
    record.active = target.version.clone();
    Ok(record)
}

/// Every tenant's functions, persisted in `functions.json` + `components/`.
#[derive(Debug)]
pub struct LocalFunctions {
    path: PathBuf,
    components: PathBuf,
    records: RwLock<Vec<FunctionRecord>>,
}

impl LocalFunctions {
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

    fn records(&self) -> std::sync::RwLockReadGuard<'_, Vec<FunctionRecord>> {
        self.records.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `change` to the tenant's record under the lock and saves;
    /// `None` from `change` removes the record.
    fn update<T>(
        &self,
        tenant: &str,
        name: &str,
        change: impl FnOnce(Option<FunctionRecord>) -> Result<(Option<FunctionRecord>, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut records = self.records.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = records.iter().position(|r| r.tenant == tenant && r.name == name);
        let (updated, answer) = change(index.map(|i| records[i].clone()))?;
        let mut next = records.clone();
        match (index, updated) {
            (Some(i), Some(record)) => next[i] = record,
            (Some(i), None) => {
                next.remove(i);
            }
            (None, Some(record)) => next.push(record),
            (None, None) => {}
        }
        write_json(&self.path, &next)?;
        *records = next;
        Ok(answer)
    }
}

#[async_trait::async_trait]
impl FunctionStore for LocalFunctions {
    async fn component(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.component_path(version);
        std::fs::read(&path).map_err(io_error(&path))
    }

    async fn deploy(
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
        let deployed = self.update(tenant, name, |record| {
            let (record, is_new) = with_deployment(record, tenant, name, version, bytes.len() as u64);
            Ok((Some(record.clone()), (record, is_new)))
        });
        deployed.map_err(|err| match err {
            RegistryError::Store(err) => err,
            other => StoreError::CorruptRecord(other.to_string()),
        })
    }

    async fn rollback(&self, tenant: &str, name: &str, version: Option<&str>) -> Result<FunctionRecord, RegistryError> {
        self.update(tenant, name, |record| {
            let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
            let record = with_rollback(record, version)?;
            Ok((Some(record.clone()), record))
        })
    }

    async fn get(&self, tenant: &str, name: &str) -> Result<Option<FunctionRecord>, StoreError> {
        Ok(self.records().iter().find(|r| r.tenant == tenant && r.name == name).cloned())
    }

    async fn list(&self, tenant: &str) -> Result<Vec<FunctionRecord>, StoreError> {
        let mut mine: Vec<_> = self.records().iter().filter(|r| r.tenant == tenant).cloned().collect();
        mine.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(mine)
    }

    async fn all_versions(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.records().iter().flat_map(|r| r.versions.iter().map(|v| v.version.clone())).collect())
    }

    async fn delete(&self, tenant: &str, name: &str) -> Result<FunctionRecord, RegistryError> {
        self.update(tenant, name, |record| {
            let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
            Ok((None, record))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deploy_rollback_delete_and_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = LocalFunctions::open(dir.path()).expect("open");
        let (first, new) = registry.deploy("t1", "blur", "sha256:aa", b"one").await.expect("deploy");
        assert!(new);
        assert_eq!(first.active, "sha256:aa");
        let (second, _) = registry.deploy("t1", "blur", "sha256:bb", b"two").await.expect("deploy");
        assert_eq!((second.active.as_str(), second.versions.len()), ("sha256:bb", 2));
        let (again, new) = registry.deploy("t1", "blur", "sha256:bb", b"two").await.expect("redeploy");
        assert!(!new);
        assert_eq!(again.versions.len(), 2);

        assert_eq!(registry.rollback("t1", "blur", None).await.expect("rollback").active, "sha256:aa");
        assert_eq!(registry.rollback("t1", "blur", Some("sha256:bb")).await.expect("rollback").active, "sha256:bb");
        let missing = registry.rollback("t1", "blur", Some("sha256:cc")).await;
        assert!(matches!(missing, Err(RegistryError::NoSuchVersion { .. })));
        assert!(registry.get("t2", "blur").await.expect("read").is_none(), "another tenant sees nothing");

        let reopened = LocalFunctions::open(dir.path()).expect("reopen");
        assert_eq!(reopened.get("t1", "blur").await.expect("read").expect("kept").active, "sha256:bb");
        assert_eq!(reopened.component("sha256:aa").await.expect("bytes"), b"one");
        reopened.delete("t1", "blur").await.expect("delete");
        assert!(reopened.list("t1").await.expect("read").is_empty());
        assert!(matches!(reopened.delete("t1", "blur").await, Err(RegistryError::NotFound(_))));
    }
}
