//! Which queue and state stores a process uses: in-process and the data
//! directory (one node), or one Redis shared by every front door and worker.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_core::redact_url;
use sluice_scheduler::{Queue, QueueConfig};

use crate::store::Stores;
use crate::store::usage::UsageRetention;
use crate::worker::Drain;

/// Key prefix in Redis, so several deployments can share one server.
pub const DEFAULT_PREFIX: &str = sluice_scheduler::DEFAULT_PREFIX;

/// The queue URL of a single node: jobs live in this process.
const IN_PROCESS_QUEUE: &str = "memory:";

/// A connected queue and stores, and how worker slots drain over them.
pub struct Backend {
    /// The job queue.
    pub queue: Arc<dyn Queue>,
    /// Tenants, functions, usage.
    pub stores: Stores,
    /// Memory queues must be emptied before exit; Redis keeps what is left.
    pub drain: Drain,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("drain", &self.drain).finish_non_exhaustive()
    }
}

impl Backend {
    /// Redis at `redis_url` when given (keys under `prefix`), else local
    /// state in `data_dir` and an in-memory queue; usage totals are kept
    /// for `usage_retention`.
    pub async fn connect(
        redis_url: Option<&str>,
        prefix: &str,
        queue: QueueConfig,
        data_dir: &Path,
        usage_retention: Duration,
    ) -> anyhow::Result<Self> {
        let retention = UsageRetention { billed_ids: billed_id_window(&queue), totals: usage_retention };
        let queue_url = redis_url.unwrap_or(IN_PROCESS_QUEUE);
        let queue = sluice_scheduler::connect(queue_url, queue, prefix)
            .await
            .with_context(|| format!("cannot use {} as the queue", redact_url(queue_url)))?;
        match redis_url {
            Some(url) => {
                let stores = Stores::redis_with(url, prefix, retention)
                    .await
                    .with_context(|| format!("cannot use Redis at {} for shared state", redact_url(url)))?;
                Ok(Self { queue, stores, drain: Drain::InFlight })
            }
            None => {
                let stores = Stores::local_with(data_dir, retention)
                    .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
                Ok(Self { queue, stores, drain: Drain::Queue })
            }
        }
    }
}

/// How long a billed attempt's id stays known. An attempt is recorded by
/// the delivery that ran it, and only while that delivery holds its lease
/// (a lapsed lease is a new delivery, billed under a new id), so twice the
/// visibility timeout covers every repeat; keeping ids for the whole job
/// TTL would grow with the request rate. Never longer than the job TTL.
pub fn billed_id_window(queue: &QueueConfig) -> Duration {
    queue.result_ttl.min(queue.visibility_timeout.saturating_mul(2))
}

/// A name for this process among worker nodes: host name and process id.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{}", std::process::id())
}
