//! One node's lifecycle, the same for `sluice serve` and `sluice worker`:
//! connect the queue and stores, open and warm the platform, start the
//! worker slots and the heartbeat; on shutdown stop the slots (draining as
//! the queue requires) under a deadline and stop the heartbeat.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sluice_scheduler::{Queue, QueueConfig};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::backend::Backend;
use crate::platform::{Platform, PlatformConfig};
use crate::worker::{self, Drain};

/// Where a node's queue and state live.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// The shared Redis; `None` keeps jobs in this process and state in the data dir.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry the password.
        f.debug_struct("BackendConfig")
            .field("redis_url", &self.redis_url.as_deref().map(sluice_core::redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .finish()
    }
}

/// A running node: its platform, worker slots and heartbeat.
pub struct Node {
    /// The platform the slots (and a front door, if any) work through.
    pub platform: Arc<Platform>,
    /// This node's name among workers.
    pub name: String,
    slots: JoinSet<()>,
    /// Declared after `slots`: the tasks are aborted before their threads go.
    slot_runtime: Option<worker::SlotRuntime>,
    stop_slots: watch::Sender<bool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Node {
    /// Connects `backend`, opens the platform, starts compiling the active
    /// version of every deployed function in the background, and starts `slots` worker slots named `{name}/{n}` and,
    /// when there are any, the heartbeat that counts this node as a worker.
    pub async fn start(
        platform: PlatformConfig,
        queue: QueueConfig,
        backend: &BackendConfig,
        slots: usize,
        name: String,
    ) -> anyhow::Result<Self> {
        let data_dir: &Path = &platform.data_dir;
        let retention = platform.usage_retention;
        let connected =
            Backend::connect(backend.redis_url.as_deref(), &backend.redis_prefix, queue, data_dir, retention).await?;
        warn_if_evicting(&*connected.queue).await;
        let drain: Drain = connected.drain;
        let platform =
            Platform::open(platform, connected.queue, connected.stores).context("cannot open the platform")?;
        // Warming compiles in the background, so the node serves at once;
        // a call that comes first compiles its function on demand.
        tokio::spawn({
            let platform = Arc::clone(&platform);
            async move { platform.warm().await }
        });
        tokio::spawn(drop_stale_versions_every(Arc::downgrade(&platform)));
        let (stop_slots, stop) = watch::channel(false);
        let slot_runtime = match slots {
            0 => None,
            _ => Some(worker::SlotRuntime::new(slots).context("cannot start the worker slots' threads")?),
        };
        let slot_set = match slot_runtime.as_ref().and_then(worker::SlotRuntime::handles) {
            Some(handles) => worker::spawn_slots(Arc::clone(&platform), slots, &name, drain, stop, &handles),
            None => JoinSet::new(),
        };
        let heartbeat = match slots {
            0 => None,
            _ => Some(worker::start_heartbeat(&platform, name.clone()).await),
        };
        Ok(Self { platform, name, slots: slot_set, slot_runtime, stop_slots, heartbeat })
    }

    /// Turns true once the node starts draining (for tasks that should stop with it).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop_slots.subscribe()
    }

    /// Stops the slots and waits for them until `deadline`: an in-memory
    /// queue is emptied first (it would lose its jobs), a Redis one only
    /// finishes the jobs in hand (the rest wait for other workers). Slots
    /// still busy at the deadline are aborted; their jobs' leases lapse and
    /// other workers take them over. Returns false when that happened.
    pub async fn drain(mut self, deadline: tokio::time::Instant) -> bool {
        let _ = self.stop_slots.send(true);
        let slots = &mut self.slots;
        let drained = tokio::time::timeout_at(deadline, async { while slots.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("jobs were still running at the drain timeout");
            self.slots.abort_all();
        }
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        self.slot_runtime.take();
        drained.is_ok()
    }
}

/// Logs a warning when the queue's server may evict keys under memory
/// pressure: a job's record or output, or an idempotency key, could vanish
/// before its TTL. Returns the policy it warned about.
pub async fn warn_if_evicting(queue: &dyn Queue) -> Option<String> {
    match queue.eviction_risk().await {
        Ok(Some(policy)) => {
            tracing::warn!(
                maxmemory_policy = %policy,
                "Redis may evict job records, results and idempotency keys under memory pressure; \
                 set `maxmemory-policy noeviction` (with a `maxmemory`) so a full Redis refuses new jobs instead"
            );
            Some(policy)
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read the Redis eviction policy");
            None
        }
    }
}

/// Drops, every `stale_sweep_every`, what this node holds of versions other
/// nodes deleted; ends with the platform.
async fn drop_stale_versions_every(platform: std::sync::Weak<Platform>) {
    loop {
        let Some(every) = platform.upgrade().map(|platform| platform.config.stale_sweep_every) else { return };
        tokio::time::sleep(every).await;
        let Some(platform) = platform.upgrade() else { return };
        match platform.drop_stale_versions().await {
            Ok(0) => {}
            Ok(dropped) => tracing::info!(versions = dropped, "dropped compiled code of deleted versions"),
            Err(err) => tracing::debug!(cause = %err, "cannot check for deleted versions now"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use sluice_scheduler::{QueueConfig, RedisQueue, RedisQueueConfig};
    use tracing::instrument::WithSubscriber;

    use super::*;

    /// Everything logged through it, as text.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
        }
    }

    async fn warning_for(policy: &str) -> (Option<String>, String) {
        let redis = sluice_testkit::spawn_redis();
        let mut con = redis::Client::open(redis.url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query_async(&mut con)
            .await
            .expect("config set");
        let queue =
            RedisQueue::connect(RedisQueueConfig::new(redis.url.clone(), QueueConfig::default())).await.expect("queue");
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let warned = warn_if_evicting(&*queue).with_subscriber(subscriber).await;
        (warned, captured.text())
    }

    #[tokio::test]
    async fn a_node_warns_when_redis_may_evict_job_keys() {
        let (warned, log) = warning_for("allkeys-lru").await;
        assert_eq!(warned.as_deref(), Some("allkeys-lru"));
        assert!(log.contains("WARN") && log.contains("maxmemory_policy=allkeys-lru"), "{log}");
    }

    #[tokio::test]
    async fn a_node_is_quiet_when_redis_never_evicts() {
        let (warned, log) = warning_for("noeviction").await;
        assert_eq!(warned, None);
        assert_eq!(log, "");
    }

    #[tokio::test]
    async fn an_in_memory_queue_has_nothing_to_evict() {
        let queue = sluice_scheduler::MemoryQueue::new(QueueConfig::default());
        assert_eq!(warn_if_evicting(&queue).await, None);
    }
}
