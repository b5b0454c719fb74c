//! The Redis backend's settings: the backend-independent [`QueueConfig`]
//! plus where Redis is and what only this backend needs.

use std::time::Duration;

use crate::QueueConfig;

/// Every key starts with this unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "sluice";

/// Bodies up to this size go inline by default. Measured with
/// `bench/benches/queue.rs` (one run, 2 cores): inline/by-reference round
/// trip 1.11 at 256 B (within noise), 0.82 at 64 KiB, 0.70 at 1 MiB. Larger
/// bodies still go by reference: a retry or reclaim copies the stream
/// entry, and multi-megabyte entries would sit in the stream while queued.
pub const DEFAULT_INLINE_LIMIT: usize = 1024 * 1024;

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
    /// Request bodies up to this size ride in the stream entry; larger ones
    /// are kept in the job hash and the entry only names the job.
    pub inline_limit: usize,
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
        Self {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            queue,
            command_timeout: Duration::from_secs(1),
            inline_limit: DEFAULT_INLINE_LIMIT,
        }
    }
}
