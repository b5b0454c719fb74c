//! A tenant's whole life beyond creation: deleting one takes its queued
//! work, results and functions with it, and keeps its usage for billing.

use std::sync::Arc;

use sluice_core::{ErrorCode, TenantId};
use sluice_scheduler::QueueError;

use super::{Platform, SYNC_GRACE};
use crate::store::StoreError;
use crate::store::functions::RegistryError;
use crate::store::tenants::Tenant;

/// What deleting a tenant removed.
#[derive(Debug, Clone)]
pub struct TenantDeleted {
    /// The tenant as it was.
    pub tenant: Tenant,
    /// Jobs cancelled or forgotten (queued, finished with results kept).
    pub jobs: u64,
    /// Functions deleted.
    pub functions: usize,
}

/// Why a tenant's deletion did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DeleteTenantError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A function could not be removed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl DeleteTenantError {
    /// The stable code callers see for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Store(err) => err.code(),
            Self::Queue(err) => err.code(),
            Self::Registry(err) => err.code(),
        }
    }
}

impl Platform {
    /// Deletes the tenant named `name`: its keys stop working on every node,
    /// its waiting jobs are cancelled, its kept results and functions are
    /// removed; its usage stays for billing. `None` when there is no such
    /// tenant. Deleting again after a failure finishes the job.
    pub async fn delete_tenant(self: &Arc<Self>, name: &str) -> Result<Option<TenantDeleted>, DeleteTenantError> {
        let Some(tenant) = self.stores.tenants.delete(name).await? else { return Ok(None) };
        let (jobs, functions) = self.sweep_tenant(&tenant.id).await?;
        // A request authenticated just before the deletion may still be
        // compiling a deploy or queueing a job; once any such request has
        // had time to end, sweep again.
        let platform = Arc::clone(self);
        let id = tenant.id.clone();
        let later = self.config.compile_timeout + SYNC_GRACE;
        tokio::spawn(async move {
            tokio::time::sleep(later).await;
            if let Err(err) = platform.sweep_tenant(&id).await {
                tracing::warn!(tenant = %id, cause = %err, "the second sweep of a deleted tenant failed");
            }
        });
        tracing::info!(tenant = %tenant.id, name, jobs, functions, "tenant deleted");
        Ok(Some(TenantDeleted { tenant, jobs, functions }))
    }

    /// Cancels `tenant`'s jobs, drops its results and deletes its functions.
    async fn sweep_tenant(&self, tenant: &TenantId) -> Result<(u64, usize), DeleteTenantError> {
        let jobs = self.queue.forget_tenant(tenant).await?;
        let functions = self.stores.functions.list(tenant).await?;
        for function in &functions {
            match self.delete(tenant, &function.name).await {
                Ok(_) | Err(RegistryError::NotFound(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok((jobs, functions.len()))
    }
}
