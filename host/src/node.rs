//! One node's lifecycle, the same for `sluice serve` and `sluice worker`:
//! connect the queue and stores, open and warm the platform, start the
//! worker slots and the heartbeat; on shutdown stop the slots (draining as
//! the queue requires) under a deadline and stop the heartbeat.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sluice_scheduler::QueueConfig;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::backend::Backend;
use crate::platform::{Platform, PlatformConfig};
use crate::worker::{self, Drain};

/// Where a node's queue and state live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// The shared Redis; `None` keeps jobs in this process and state in the data dir.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
}

/// A running node: its platform, worker slots and heartbeat.
pub struct Node {
    /// The platform the slots (and a front door, if any) work through.
    pub platform: Arc<Platform>,
    /// This node's name among workers.
    pub name: String,
    slots: JoinSet<()>,
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
        let drain: Drain = connected.drain;
        let platform =
            Platform::open(platform, connected.queue, connected.stores).context("cannot open the platform")?;
        // Warming compiles in the background, so the node serves at once;
        // a call that comes first compiles its function on demand.
        tokio::spawn({
            let platform = Arc::clone(&platform);
            async move { platform.warm().await }
        });
        let (stop_slots, stop) = watch::channel(false);
        let slot_set = worker::spawn_slots(Arc::clone(&platform), slots, &name, drain, stop);
        let heartbeat = match slots {
            0 => None,
            _ => Some(worker::start_heartbeat(&platform, name.clone()).await),
        };
        Ok(Self { platform, name, slots: slot_set, stop_slots, heartbeat })
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
        drained.is_ok()
    }
}
