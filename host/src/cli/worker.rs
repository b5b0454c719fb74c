//! `sluice worker`: a worker node. It takes jobs from the shared Redis
//! queue, runs them in its sandbox and settles them; function bytes come
//! from Redis once per version and their compiled artifacts are cached in
//! the data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::serve::{BackendArgs, DeliveryArgs, SandboxArgs, block_on, serve_defaults, shutdown_signal};
use crate::backend::node_name;
use crate::platform::PlatformConfig;
use crate::worker::{self, WorkerConfig};

/// Arguments of `sluice worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Where jobs and state live (a worker needs `--redis`).
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Where compiled artifacts are cached.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "sluice-worker-data")]
    pub data_dir: PathBuf,
    /// Jobs run at once [default: one per core].
    #[arg(long, env = "SLUICE_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// This node's name among workers [default: host name and process id].
    #[arg(long, env = "SLUICE_NODE_NAME")]
    pub name: Option<String>,
    /// Sandbox limits.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Job delivery settings.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// How long shutdown waits for the jobs in hand.
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT", default_value_t = serve_defaults().drain_timeout.into())]
    pub drain_timeout: humantime::Duration,
}

impl WorkerArgs {
    /// The node configuration these flags describe.
    pub fn config(&self) -> WorkerConfig {
        let mut platform = PlatformConfig::new(self.data_dir.clone());
        self.sandbox.apply(&mut platform);
        WorkerConfig {
            platform,
            queue: self.delivery.queue_config(),
            backend: self.backend.config(),
            concurrency: self.concurrency.unwrap_or_else(worker::default_slots).max(1),
            drain_timeout: *self.drain_timeout,
            name: self.name.clone().unwrap_or_else(node_name),
        }
    }
}

/// Runs `sluice worker` until SIGINT or SIGTERM (then drains); a second signal exits at once.
pub fn execute(args: WorkerArgs) -> ExitCode {
    let config = args.config();
    let (name, concurrency) = (config.name.clone(), config.concurrency);
    block_on(
        "worker",
        worker::run_node(config, shutdown_signal(), move || {
            println!("sluice worker {name} taking jobs ({concurrency} at once)");
        }),
    )
}
