//! Deployed functions: per tenant, each name has its versions (content
//! addresses of the component bytes) and one active version. Component bytes
//! are stored once per version, so redeploying identical bytes or rolling
//! back costs no space. Every backend applies the same record changes
//! ([`with_deployment`], [`with_rollback`]); they differ only in where the
//! record and bytes live and how concurrent changes are serialized.

use serde::{Deserialize, Serialize};
use sluice_core::{TenantId, Version};

use super::StoreError;

/// One deployed version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    /// Content address of the component.
    pub version: Version,
    /// Component size in bytes.
    pub size: u64,
    /// Deployed at, ms since the epoch.
    pub deployed_at_ms: u64,
}

/// A tenant's function and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Owning tenant's id.
    pub tenant: TenantId,
    /// The function's name.
    pub name: String,
    /// The version calls run.
    pub active: Version,
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
        /// The version asked for, or `(previous)` when none was named.
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
///
/// Every backend keeps records and bytes across a restart, and applies
/// concurrent changes to one record one after the other, so no deploy is
/// lost to another.
#[async_trait::async_trait]
pub trait FunctionStore: Send + Sync {
    /// The bytes of `version`; an error when they were never stored.
    async fn component(&self, version: &Version) -> Result<Vec<u8>, StoreError>;

    /// Records a deployment of `bytes` (already validated) as `version` and
    /// makes it active. Returns the updated record and whether the version is new.
    async fn deploy(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &Version,
        bytes: &[u8],
    ) -> Result<(FunctionRecord, bool), StoreError>;

    /// Makes an earlier `version` active again; `None` means the one deployed
    /// before the active one.
    async fn rollback(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<&Version>,
    ) -> Result<FunctionRecord, RegistryError>;

    /// The tenant's function called `name`.
    async fn get(&self, tenant: &TenantId, name: &str) -> Result<Option<FunctionRecord>, StoreError>;

    /// The tenant's functions, by name.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<FunctionRecord>, StoreError>;

    /// Every version of every tenant's functions, each once, in no
    /// particular order (to warm the runtime at start-up). A backend may
    /// also list versions of deleted functions, whose bytes it keeps.
    async fn all_versions(&self) -> Result<Vec<Version>, StoreError>;

    /// Removes the tenant's function. Component bytes stay (another tenant
    /// may have deployed the same bytes, and running jobs may need them).
    async fn delete(&self, tenant: &TenantId, name: &str) -> Result<FunctionRecord, RegistryError>;
}

/// `record` (or a new one) after deploying `version`; true when the version is new.
pub(crate) fn with_deployment(
    record: Option<FunctionRecord>,
    tenant: &TenantId,
    name: &str,
    version: &Version,
    size: u64,
) -> (FunctionRecord, bool) {
    let mut record = record.unwrap_or_else(|| FunctionRecord {
        tenant: tenant.clone(),
        name: name.to_owned(),
        active: version.clone(),
        versions: Vec::new(),
    });
    let is_new = !record.versions.iter().any(|v| v.version == *version);
    if is_new {
        record.versions.push(FunctionVersion {
            version: version.clone(),
            size,
            deployed_at_ms: sluice_scheduler::now_ms(),
        });
    }
    record.active = version.clone();
    (record, is_new)
}

/// `record` with `version` (or the one before the active one) active again.
pub(crate) fn with_rollback(
    mut record: FunctionRecord,
    version: Option<&Version>,
) -> Result<FunctionRecord, RegistryError> {
    let target = match version {
        Some(version) => record.versions.iter().find(|v| v.version == *version),
        None => {
            let active = record.versions.iter().position(|v| v.version == record.active).unwrap_or(0);
            active.checked_sub(1).and_then(|i| record.versions.get(i))
        }
    };
    let target = target.ok_or_else(|| RegistryError::NoSuchVersion {
        name: record.name.clone(),
        version: version.map_or("(previous)", Version::as_str).to_owned(),
    })?;
    record.active = target.version.clone();
    Ok(record)
}
