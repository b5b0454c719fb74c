//! Deployed functions: per tenant, each name has its versions (content
//! addresses of the component bytes) and one active version. Component bytes
//! are stored once per version, so redeploying identical bytes or rolling
//! back costs no space. Every backend applies the same record changes
//! ([`with_deployment`], [`with_rollback`]); they differ only in where the
//! record and bytes live and how concurrent changes are serialized.
//!
//! Storage is bounded: a deploy keeps at most a given number of versions
//! per function, pruning the oldest inactive ones (never the active
//! version nor its rollback target, the one just before it), and bytes no
//! record references any more (after a prune or a delete) are collected.

use serde::{Deserialize, Serialize};
use sluice_core::{TenantId, Version, World};

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
    /// The world the component implements (records written before worlds
    /// were recorded hold only transforms).
    #[serde(default)]
    pub world: World,
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

    /// Records a deployment of `bytes` (already validated, a `transform`) as
    /// `version` and makes it active. Returns the updated record and whether
    /// the version is new; every version is kept.
    async fn deploy(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &Version,
        bytes: &[u8],
    ) -> Result<(FunctionRecord, bool), StoreError> {
        let deployment = self.deploy_keeping(tenant, name, (version, World::Transform), bytes, usize::MAX).await?;
        Ok((deployment.record, deployment.is_new))
    }

    /// [`deploy`](Self::deploy) of a component of any world, keeping at
    /// most `keep` versions (at least two: the active one and its rollback
    /// target); older inactive ones are pruned and their bytes collected
    /// when nothing else references them.
    async fn deploy_keeping(
        &self,
        tenant: &TenantId,
        name: &str,
        version: (&Version, World),
        bytes: &[u8],
        keep: usize,
    ) -> Result<Deployment, StoreError>;

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

    /// Every version of every tenant's functions whose bytes are stored,
    /// each once, in no particular order.
    async fn all_versions(&self) -> Result<Vec<Version>, StoreError>;

    /// The active version of every tenant's functions, each once, in no
    /// particular order: what a node compiles ahead of calls at start-up
    /// (older versions compile on demand, after a rollback).
    async fn active_versions(&self) -> Result<Vec<Version>, StoreError>;

    /// Removes the tenant's function and collects the bytes of its versions
    /// that no other function (of any tenant) references.
    async fn remove(&self, tenant: &TenantId, name: &str) -> Result<Removal, RegistryError>;

    /// [`remove`](Self::remove), answering only the removed record.
    async fn delete(&self, tenant: &TenantId, name: &str) -> Result<FunctionRecord, RegistryError> {
        Ok(self.remove(tenant, name).await?.record)
    }
}

/// What a deployment changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The record as it now is.
    pub record: FunctionRecord,
    /// True when the version was not in the record before.
    pub is_new: bool,
    /// Versions whose bytes were deleted (pruned and referenced nowhere
    /// else): compiled code of them can be dropped too.
    pub collected: Vec<Version>,
}

/// What deleting a function changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The record as it was.
    pub record: FunctionRecord,
    /// Versions whose bytes were deleted (referenced nowhere else).
    pub collected: Vec<Version>,
}

/// Fewest versions a function keeps: the active one and its rollback target.
pub const MIN_KEPT_VERSIONS: usize = 2;

/// `record` (or a new one) after deploying `version`, true when the
/// version is new, and the versions pruned to keep at most `keep`.
pub(crate) fn with_deployment(
    record: Option<FunctionRecord>,
    tenant: &TenantId,
    name: &str,
    (version, world): (&Version, World),
    size: u64,
    keep: usize,
) -> (FunctionRecord, bool, Vec<Version>) {
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
            world,
        });
    }
    record.active = version.clone();
    let pruned = prune(&mut record, keep);
    (record, is_new, pruned)
}

/// The version a rollback without a named version goes to: the one
/// deployed just before the active one.
pub fn rollback_target(record: &FunctionRecord) -> Option<&Version> {
    let active = record.versions.iter().position(|v| v.version == record.active)?;
    active.checked_sub(1).and_then(|i| record.versions.get(i)).map(|v| &v.version)
}

/// Drops the oldest versions beyond `keep` (at least [`MIN_KEPT_VERSIONS`]),
/// never the active one or its rollback target; returns what was dropped.
fn prune(record: &mut FunctionRecord, keep: usize) -> Vec<Version> {
    let keep = keep.max(MIN_KEPT_VERSIONS);
    let mut pruned = Vec::new();
    while record.versions.len() > keep {
        let protected = [Some(record.active.clone()), rollback_target(record).cloned()];
        let Some(oldest) = record.versions.iter().position(|v| !protected.contains(&Some(v.version.clone()))) else {
            break;
        };
        pruned.push(record.versions.remove(oldest).version);
    }
    pruned
}

/// Versions in `before` that `after` (the same function's record, or
/// `None` once deleted) no longer lists: candidates for collection.
pub(crate) fn dropped_versions(before: Option<&FunctionRecord>, after: Option<&FunctionRecord>) -> Vec<Version> {
    let Some(before) = before else { return Vec::new() };
    before
        .versions
        .iter()
        .map(|v| &v.version)
        .filter(|version| after.is_none_or(|after| !after.versions.iter().any(|v| v.version == **version)))
        .cloned()
        .collect()
}

/// `record` with `version` (or the one before the active one) active again.
pub(crate) fn with_rollback(
    mut record: FunctionRecord,
    version: Option<&Version>,
) -> Result<FunctionRecord, RegistryError> {
    let target = match version {
        Some(version) => record.versions.iter().find(|v| v.version == *version),
        None => rollback_target(&record).and_then(|target| record.versions.iter().find(|v| v.version == *target)),
    };
    let target = target.ok_or_else(|| RegistryError::NoSuchVersion {
        name: record.name.clone(),
        version: version.map_or("(previous)", Version::as_str).to_owned(),
    })?;
    record.active = target.version.clone();
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy_all(labels: &[&str], keep: usize) -> (FunctionRecord, Vec<Version>) {
        let tenant = TenantId::from("t");
        let mut record = None;
        let mut pruned = Vec::new();
        for label in labels {
            let version = Version(format!("sha256:{label}"));
            let (next, _, dropped) = with_deployment(record, &tenant, "f", (&version, World::Transform), 1, keep);
            pruned.extend(dropped);
            record = Some(next);
        }
        (record.expect("deployed"), pruned)
    }

    fn labels(record: &FunctionRecord) -> Vec<&str> {
        record.versions.iter().map(|v| v.version.as_str().trim_start_matches("sha256:")).collect()
    }

    #[test]
    fn the_oldest_versions_beyond_the_quota_are_pruned() {
        let (record, pruned) = deploy_all(&["a", "b", "c", "d"], 3);
        assert_eq!(labels(&record), ["b", "c", "d"]);
        assert_eq!(pruned, [Version::from("sha256:a")]);
    }

    #[test]
    fn the_active_version_and_its_rollback_target_are_never_pruned() {
        let (record, _) = deploy_all(&["a", "b", "c"], 10);
        let b = Version::from("sha256:b");
        let (record, is_new, pruned) =
            with_deployment(Some(record), &TenantId::from("t"), "f", (&b, World::Transform), 1, 2);
        assert!(!is_new);
        assert_eq!(labels(&record), ["a", "b"], "b is active and a, its rollback target, is older than c");
        assert_eq!(pruned, [Version::from("sha256:c")]);
    }

    #[test]
    fn a_pruned_version_deployed_again_is_new() {
        let (record, pruned) = deploy_all(&["a", "b", "c", "a"], 2);
        assert_eq!(labels(&record), ["c", "a"]);
        assert_eq!(pruned, [Version::from("sha256:a"), Version::from("sha256:b")]);
    }

    #[test]
    fn a_quota_below_two_still_keeps_a_rollback_target() {
        let (record, pruned) = deploy_all(&["a", "b", "c"], 0);
        assert_eq!(labels(&record), ["b", "c"]);
        assert_eq!(pruned.len(), 1);
    }

    #[test]
    fn dropped_versions_are_those_no_longer_listed() {
        let (before, _) = deploy_all(&["a", "b", "c"], 10);
        let (after, _) = deploy_all(&["b", "c"], 10);
        assert_eq!(dropped_versions(Some(&before), Some(&after)), [Version::from("sha256:a")]);
        assert_eq!(dropped_versions(Some(&before), None).len(), 3);
        assert!(dropped_versions(None, Some(&after)).is_empty());
    }
}
