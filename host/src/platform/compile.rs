//! Compile slots. Compiling a component takes seconds of a core and cannot
//! be interrupted (wasmtime's compiler has no cancellation point), so the
//! number of compiles at once is bounded on the whole node and per tenant:
//! one tenant deploying in a loop holds at most its share, and every
//! other tenant's deploys and first calls still find a compiler.
//!
//! A slot is held by the compiling thread itself, not by the request: when
//! a deploy gives up at its compile timeout the thread runs on, and its
//! slots stay taken until it really ends, so the bounds count it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sluice_core::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The node's compile slots and each tenant's share of them.
#[derive(Debug)]
pub struct Compilers {
    global: Arc<Semaphore>,
    per_tenant: usize,
    busy: Arc<Mutex<HashMap<TenantId, usize>>>,
}

/// A tenant's claim on one of its compile slots; released on drop.
#[derive(Debug)]
pub struct TenantSlot {
    tenant: TenantId,
    busy: Arc<Mutex<HashMap<TenantId, usize>>>,
}

/// A node-wide compile slot and, for a deploy, the tenant's; both are
/// released when the compile (its thread) ends.
#[derive(Debug)]
pub struct CompilePermit {
    _global: Option<OwnedSemaphorePermit>,
    _tenant: Option<TenantSlot>,
}

impl Compilers {
    /// `global` compiles at once on the node, at most `per_tenant` of them
    /// for one tenant's deploys (each at least 1).
    pub fn new(global: usize, per_tenant: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_tenant: per_tenant.max(1),
            busy: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// How many of its deploys a tenant may have compiling at once.
    pub fn per_tenant(&self) -> usize {
        self.per_tenant
    }

    /// Claims one of `tenant`'s slots, or `None` at once when all of them
    /// are taken (the deploy is refused rather than queued behind its own).
    pub fn tenant_slot(&self, tenant: &TenantId) -> Option<TenantSlot> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let count = busy.entry(tenant.clone()).or_insert(0);
        if *count >= self.per_tenant {
            return None;
        }
        *count += 1;
        Some(TenantSlot { tenant: tenant.clone(), busy: Arc::clone(&self.busy) })
    }

    /// Waits for a node-wide slot; `tenant` (a deploy's slot) is kept with it.
    pub async fn permit(&self, tenant: Option<TenantSlot>) -> CompilePermit {
        // The semaphore is never closed, so this only fails in theory; then
        // compiling unbounded beats refusing forever.
        let global = Arc::clone(&self.global).acquire_owned().await.ok();
        CompilePermit { _global: global, _tenant: tenant }
    }

    /// Node-wide slots free now.
    pub fn available(&self) -> usize {
        self.global.available_permits()
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = busy.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                busy.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_gets_at_most_its_share_and_gets_it_back_on_drop() {
        let compilers = Compilers::new(4, 2);
        let acme = TenantId::from("acme");
        let first = compilers.tenant_slot(&acme).expect("first slot");
        let second = compilers.tenant_slot(&acme).expect("second slot");
        assert!(compilers.tenant_slot(&acme).is_none(), "over its share");
        assert!(compilers.tenant_slot(&TenantId::from("other")).is_some(), "others are not affected");
        drop(first);
        assert!(compilers.tenant_slot(&acme).is_some());
        drop(second);
    }

    #[tokio::test]
    async fn a_permit_holds_a_global_slot_until_dropped() {
        let compilers = Compilers::new(2, 1);
        let permit = compilers.permit(compilers.tenant_slot(&TenantId::from("acme"))).await;
        assert_eq!(compilers.available(), 1);
        assert!(compilers.tenant_slot(&TenantId::from("acme")).is_none(), "the permit keeps the tenant's slot");
        drop(permit);
        assert_eq!(compilers.available(), 2);
        assert!(compilers.tenant_slot(&TenantId::from("acme")).is_some());
    }
}
