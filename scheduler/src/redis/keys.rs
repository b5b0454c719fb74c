//! The names of one deployment's keys. Every key starts with the
//! deployment's prefix, so several deployments can share one Redis.

use sluice_core::TenantId;

use crate::JobId;

/// The consumer group every worker reads the job stream through.
pub(super) const GROUP: &str = "workers";

/// Key names under one prefix (the table in the module docs).
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    /// Stream of job entries, read through [`GROUP`].
    pub stream: String,
    /// Jobs accepted and not finished.
    pub depth: String,
    /// Jobs waiting for a worker (what the capacity bounds).
    pub waiting: String,
    /// Stream of dead-lettered jobs.
    pub dead: String,
    /// Channel announcing jobs that just ended.
    pub done: String,
    /// Sorted set of worker nodes by last heartbeat.
    pub nodes: String,
    /// Sorted set of kept outputs (`{bytes}|{job}|{tenant}`) by expiry, ms.
    pub results: String,
    /// Hash of kept output bytes: `t:{tenant}` per tenant and `total`.
    pub result_bytes: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            stream: format!("{prefix}:jobs"),
            depth: format!("{prefix}:depth"),
            waiting: format!("{prefix}:waiting"),
            dead: format!("{prefix}:dead"),
            done: format!("{prefix}:done"),
            nodes: format!("{prefix}:nodes"),
            results: format!("{prefix}:results"),
            result_bytes: format!("{prefix}:result_bytes"),
        }
    }

    /// The hash holding job `id`'s request, record and output.
    pub fn job(&self, id: &JobId) -> String {
        format!("{}{id}", self.job_prefix())
    }

    /// What every job hash's name starts with (scripts look up the job an
    /// idempotency key names by it).
    pub fn job_prefix(&self) -> String {
        format!("{}:job:", self.prefix)
    }

    /// The idempotency key `hash` of `tenant`: `{fingerprint} {job}`.
    pub fn idempotency(&self, tenant: &TenantId, hash: &str) -> String {
        format!("{}:idem:{tenant}:{hash}", self.prefix)
    }

    /// The counter of `tenant`'s unfinished jobs.
    pub fn active(&self, tenant: &TenantId) -> String {
        format!("{}:active:{tenant}", self.prefix)
    }
}
