//! Every tenant's functions in `functions.json`, component bytes in
//! `components/<hex>.wasm`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use sluice_core::{TenantId, Version};

use super::{io_error, read_json, write_atomic, write_json};
use crate::store::StoreError;
use crate::store::functions::{FunctionRecord, FunctionStore, RegistryError, with_deployment, with_rollback};

/// The functions of one data directory.
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

    fn component_path(&self, version: &Version) -> PathBuf {
        self.components.join(format!("{}.wasm", version.as_str().trim_start_matches("sha256:")))
    }

    fn records(&self) -> RwLockReadGuard<'_, Vec<FunctionRecord>> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the tenant's record under the lock and saves;
    /// `None` from `change` removes the record.
    fn update<T>(
        &self,
        tenant: &TenantId,
        name: &str,
        change: impl FnOnce(Option<FunctionRecord>) -> Result<(Option<FunctionRecord>, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        let index = records.iter().position(|r| r.tenant == *tenant && r.name == name);
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
    async fn component(&self, version: &Version) -> Result<Vec<u8>, StoreError> {
        let path = self.component_path(version);
        std::fs::read(&path).map_err(io_error(&path))
    }

    async fn deploy(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &Version,
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
    }

    async fn get(&self, tenant: &TenantId, name: &str) -> Result<Option<FunctionRecord>, StoreError> {
        Ok(self.records().iter().find(|r| r.tenant == *tenant && r.name == name).cloned())
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<FunctionRecord>, StoreError> {
        let mut mine: Vec<_> = self.records().iter().filter(|r| r.tenant == *tenant).cloned().collect();
        mine.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(mine)
    }

    async fn all_versions(&self) -> Result<Vec<Version>, StoreError> {
        // Two tenants (or two names) may deploy the same bytes: list them once.
        let versions: BTreeSet<Version> =
            self.records().iter().flat_map(|r| r.versions.iter().map(|v| v.version.clone())).collect();
        Ok(versions.into_iter().collect())
    }

    async fn delete(&self, tenant: &TenantId, name: &str) -> Result<FunctionRecord, RegistryError> {
        self.update(tenant, name, |record| {
            let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
            Ok((None, record))
        })
    }
}
