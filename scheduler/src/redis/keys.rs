//! The names of one deployment's keys that Rust reads or writes directly.
//! Every key starts with the deployment's prefix, so several deployments
//! can share one Redis. The scripts name the same keys in their prelude
//! (`scripts::PRELUDE`); the module docs hold the full table.

use sluice_core::TenantId;

use crate::JobId;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    /// Jobs accepted and not finished.
    pub depth: String,
    /// Doorbell list idle workers block on.
    pub ready: String,
    /// Tenants with jobs waiting or running.
    pub busy: String,
    /// Stream of dead-lettered jobs.
    pub dead: String,
    /// Channel announcing jobs that just ended.
    pub done: String,
    /// Sorted set of worker nodes by last heartbeat.
    pub nodes: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            depth: format!("{prefix}:depth"),
            ready: format!("{prefix}:ready"),
            busy: format!("{prefix}:busy"),
            dead: format!("{prefix}:dead"),
            done: format!("{prefix}:done"),
            nodes: format!("{prefix}:nodes"),
        }
    }

    /// The deployment's prefix, which the scripts build their key names from.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash holding job `id`'s request, record and output.
    pub fn job(&self, id: &JobId) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    /// The idempotency key `hash` of `tenant`: `{fingerprint} {job}`.
    pub fn idempotency(&self, tenant: &TenantId, hash: &str) -> String {
        format!("{}:idem:{tenant}:{hash}", self.prefix)
    }

    /// The hash of `tenant`'s counts (`waiting`, `bytes`, `running`,
    /// `limit`, `turn`).
    pub fn tenant(&self, tenant: &TenantId) -> String {
        format!("{}:tenant:{tenant}", self.prefix)
    }

    /// The sorted set of `tenant`'s waiting jobs by submission time.
    pub fn oldest(&self, tenant: &TenantId) -> String {
        format!("{}:oldest:{tenant}", self.prefix)
    }
}
