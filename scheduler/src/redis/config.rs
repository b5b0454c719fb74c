//! The Redis backend's settings: the backend-independent [`QueueConfig`]
//! plus where Redis is and what only this backend needs.

use std::time::Duration;

use crate::QueueConfig;

/// Every key starts with this unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "sluice";

/// Where to find Redis, how to name keys, and the queue's bounds.
#[derive(Clone)]
pub struct RedisQueueConfig {
    /// `redis://host:port/db`, `rediss://…` or `unix:///path`.
    pub url: String,
    /// Key prefix, so several deployments can share one Redis.
    pub prefix: String,
    /// Bounds and timeouts shared with every backend.
    pub queue: QueueConfig,
    /// Longest a command may take before the queue reports itself unavailable.
    pub command_timeout: Duration,
}

impl std::fmt::Debug for RedisQueueConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry the password.
        f.debug_struct("RedisQueueConfig")
            .field("url", &sluice_core::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl RedisQueueConfig {
    /// The queue `queue` describes, at `url`, with keys under
    /// [`DEFAULT_PREFIX`] and this backend's defaults for the rest.
    pub fn new(url: impl Into<String>, queue: QueueConfig) -> Self {
        Self { url: url.into(), prefix: DEFAULT_PREFIX.to_owned(), queue, command_timeout: Duration::from_secs(1) }
    }
}
