//! Every tenant's functions in `functions.json`, component bytes in
//! `components/<hex>.wasm`. Bytes are written and collected under the same
//! lock as the records, so a deploy never records a version whose file a
//! concurrent prune or delete is removing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use sluice_core::{TenantId, Version, World};

use super::{io_error, read_json, write_atomic, write_json};
use crate::store::StoreError;
use crate::store::functions::{
    Deployment, FunctionRecord, FunctionStore, RegistryError, Removal, dropped_versions, with_deployment, with_rollback,
};

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
    /// `None` from `change` removes the record. Then deletes the files of
    /// versions the record dropped that no record references any more, and
    /// returns them with `change`'s answer.
    fn update<T>(
        &self,
        tenant: &TenantId,
        name: &str,
        change: impl FnOnce(Option<FunctionRecord>) -> Result<(Option<FunctionRecord>, T), RegistryError>,
    ) -> Result<(T, Vec<Version>), RegistryError> {
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        let index = records.iter().position(|r| r.tenant == *tenant && r.name == name);
        let before = index.map(|i| records[i].clone());
        let (updated, answer) = change(before.clone())?;
        let dropped = dropped_versions(before.as_ref(), updated.as_ref());
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
        let mut collected = Vec::new();
        for version in dropped {
            let referenced = records.iter().any(|r| r.versions.iter().any(|v| v.version == version));
            if referenced {
                continue;
            }
            let path = self.component_path(&version);
            match std::fs::remove_file(&path) {
                Ok(()) => collected.push(version),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => collected.push(version),
                // The record no longer names it; a leftover file only costs space.
                Err(err) => tracing::warn!(path = %path.display(), cause = %err, "could not delete a component"),
            }
        }
        if !collected.is_empty() {
            // Removals are durable like writes; a lost one only costs space.
            if let Err(err) = super::sync_dir(&self.components) {
                tracing::warn!(cause = %err, "could not sync the components directory");
            }
        }
        Ok((answer, collected))
    }
}

#[async_trait::async_trait]
impl FunctionStore for LocalFunctions {
    async fn component(&self, version: &Version) -> Result<Vec<u8>, StoreError> {
        let path = self.component_path(version);
        std::fs::read(&path).map_err(io_error(&path))
    }

    async fn deploy_keeping(
        &self,
        tenant: &TenantId,
        name: &str,
        (version, world): (&Version, World),
        bytes: &[u8],
        keep: usize,
    ) -> Result<Deployment, StoreError> {
        let path = self.component_path(version);
        let deployed = self.update(tenant, name, |record| {
            // Under the records' lock: a concurrent collection cannot remove it in between.
            if !path.exists() {
                write_atomic(&path, bytes)?;
            }
            let (record, is_new, _) = with_deployment(record, tenant, name, (version, world), bytes.len() as u64, keep);
            Ok((Some(record.clone()), (record, is_new)))
        });
        match deployed {
            Ok(((record, is_new), collected)) => Ok(Deployment { record, is_new, collected }),
            Err(RegistryError::Store(err)) => Err(err),
            Err(other) => Err(StoreError::CorruptRecord(other.to_string())),
        }
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
        .map(|(record, _)| record)
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

    async fn active_versions(&self) -> Result<Vec<Version>, StoreError> {
        let versions: BTreeSet<Version> = self.records().iter().map(|r| r.active.clone()).collect();
        Ok(versions.into_iter().collect())
    }

    async fn remove(&self, tenant: &TenantId, name: &str) -> Result<Removal, RegistryError> {
        let (record, collected) = self.update(tenant, name, |record| {
            let record = record.ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
            Ok((None, record))
        })?;
        Ok(Removal { record, collected })
    }
}
