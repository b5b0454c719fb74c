//! The platform on one node: runtime, queue, stores and meter wired
//! together. The HTTP front door and the worker slots both work through it,
//! and tests can drive it without HTTP.
//!
//! Submodules: [`calls`] (sync calls, async jobs and their idempotency keys).

pub mod calls;

pub use calls::{Accepted, CallError, SYNC_GRACE, SyncCall, fingerprint};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use sluice_core::{ErrorCode, TenantId, Version};
use sluice_scheduler::Queue;

use crate::builtins;
use crate::meter::{DEFAULT_PRICES, Meter, PriceTable, UsageRecord};
use crate::metrics::Metrics;
use crate::runtime::{Function, LoadError, Runtime, RuntimeConfig};
use crate::store::functions::{FunctionRecord, RegistryError};
use crate::store::usage::{BUCKET_MS, Bucket, CommitError};
use crate::store::{StoreError, Stores};

/// Settings of one node.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Where compiled artifacts (and, without Redis, all other state) live.
    pub data_dir: PathBuf,
    /// Sandbox limits.
    pub runtime: RuntimeConfig,
    /// Largest request body (and deployable component) in bytes.
    pub max_body: usize,
    /// Per-tenant sustained request rate (requests per second).
    pub rate_per_second: u32,
    /// Per-tenant burst above the rate.
    pub rate_burst: u32,
    /// Longest a deploy may spend compiling.
    pub compile_timeout: Duration,
    /// Prices the meter applies.
    pub prices: PriceTable,
}

impl PlatformConfig {
    /// Defaults for a node whose data lives in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            runtime: RuntimeConfig { cache_dir: Some(data_dir.join("artifacts")), ..RuntimeConfig::default() },
            data_dir,
            max_body: 16 * 1024 * 1024,
            rate_per_second: 100,
            rate_burst: 200,
            compile_timeout: Duration::from_secs(60),
            prices: DEFAULT_PRICES,
        }
    }
}

/// Why a deployment was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The name belongs to a built-in.
    #[error("`{0}` is a built-in function and cannot be replaced")]
    BuiltinName(String),
    /// The name is not usable in a URL path segment.
    #[error("a function name is 1 to 64 characters of a-z, 0-9, '-' and '_', got {0:?}")]
    InvalidName(String),
    /// The component was refused.
    #[error(transparent)]
    Invalid(#[from] LoadError),
    /// The store could not record it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Compiling took longer than allowed.
    #[error("compiling the component took longer than {}s", .0.as_secs())]
    CompileTimeout(Duration),
    /// No such function or version (rollback).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An internal failure.
    #[error("deploying failed: {0:#}")]
    Internal(anyhow::Error),
}

impl DeployError {
    /// The stable code callers see for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BuiltinName(_) => ErrorCode::Conflict,
            Self::InvalidName(_) => ErrorCode::InvalidRequest,
            Self::Invalid(err) => err.code(),
            Self::Store(err) => err.code(),
            Self::CompileTimeout(_) => ErrorCode::CompileTimeout,
            Self::Registry(err) => err.code(),
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// A resolved function: which version runs and whether it is a built-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The name the caller used.
    pub name: String,
    /// Component version to run.
    pub version: Version,
}

/// One node's platform.
pub struct Platform {
    /// The sandbox.
    pub runtime: Arc<Runtime>,
    /// The job queue.
    pub queue: Arc<dyn Queue>,
    /// Tenants, functions and usage.
    pub stores: Stores,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Settings.
    pub config: PlatformConfig,
    meter: Meter,
    builtin_versions: HashMap<&'static str, Version>,
    /// Compiled functions by version; filled on deploy, on demand and at start.
    loaded: RwLock<HashMap<String, Function>>,
    /// Serializes aggregations so a record is never counted twice.
    aggregation: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Platform {
    /// Starts the runtime over `queue` and `stores` and loads the built-ins.
    pub fn open(config: PlatformConfig, queue: Arc<dyn Queue>, stores: Stores) -> anyhow::Result<Arc<Self>> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let runtime = Arc::new(Runtime::new(config.runtime.clone()).context("cannot start the runtime")?);
        let meter = Meter::builtin(&runtime).context("the built-in meter does not load")?;

        let mut loaded = HashMap::new();
        let mut builtin_versions = HashMap::new();
        for builtin in builtins::TRANSFORMS {
            let function = runtime
                .load(builtin.component)
                .with_context(|| format!("the built-in `{}` does not load", builtin.name))?;
            builtin_versions.insert(builtin.name, Version::from(function.version()));
            loaded.insert(function.version().to_owned(), function);
        }
        Ok(Arc::new(Self {
            runtime,
            queue,
            stores,
            metrics: Metrics::new(),
            config,
            meter,
            builtin_versions,
            loaded: RwLock::new(loaded),
            aggregation: tokio::sync::Mutex::new(()),
        }))
    }

    /// Compiles every deployed version ahead of the first call (from the
    /// artifact cache after a restart, so this is quick).
    pub async fn warm(&self) {
        let versions = match self.stores.functions.all_versions().await {
            Ok(versions) => versions,
            Err(err) => {
                tracing::warn!(cause = %err, "cannot list deployed versions; they load on first use");
                return;
            }
        };
        for version in versions {
            if let Err(err) = self.function(version.as_str()).await {
                tracing::warn!(%version, cause = %err, "a deployed version does not load");
            }
        }
    }

    /// The function `name` as `tenant` sees it: a built-in (their names
    /// cannot be deployed over, so no store lookup is needed), else its own.
    pub async fn resolve(&self, tenant: &TenantId, name: &str) -> Result<Option<Resolved>, StoreError> {
        if let Some(builtin) = self.builtin(name) {
            return Ok(Some(builtin));
        }
        let record = self.stores.functions.get(tenant, name).await?;
        Ok(record.map(|record| Resolved { name: name.to_owned(), version: record.active }))
    }

    /// The built-in `name`, if there is one.
    pub fn builtin(&self, name: &str) -> Option<Resolved> {
        self.builtin_versions.get(name).map(|version| Resolved { name: name.to_owned(), version: version.clone() })
    }

    /// True when `name` is a built-in.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin_versions.contains_key(name)
    }

    /// The compiled function for `version`, loading it from the registry on first use.
    pub async fn function(&self, version: &str) -> anyhow::Result<Function> {
        if let Some(function) = self.loaded.read().unwrap_or_else(PoisonError::into_inner).get(version) {
            return Ok(function.clone());
        }
        let bytes = self
            .stores
            .functions
            .component(&Version::from(version))
            .await
            .context("cannot fetch the component bytes")?;
        let runtime = Arc::clone(&self.runtime);
        // Compiling (or reading the artifact cache) is blocking work.
        let function = tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await
            .context("the compile task failed")?
            .context("the stored component no longer loads")?;
        self.loaded.write().unwrap_or_else(PoisonError::into_inner).insert(version.to_owned(), function.clone());
        Ok(function)
    }

    /// Validates, compiles (bounded in time) and records a deployment.
    pub async fn deploy(
        &self,
        tenant: &TenantId,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(FunctionRecord, bool), DeployError> {
        if self.is_builtin(name) {
            return Err(DeployError::BuiltinName(name.to_owned()));
        }
        if !valid_name(name) {
            return Err(DeployError::InvalidName(name.to_owned()));
        }
        let runtime = Arc::clone(&self.runtime);
        let bytes = Arc::new(bytes);
        let compile_input = Arc::clone(&bytes);
        // Compilation is CPU-bound: keep it off the async threads. A compile
        // that overruns keeps its thread until it finishes, but the caller
        // gets an answer and nothing is recorded.
        let compile = tokio::task::spawn_blocking(move || runtime.load(&compile_input));
        let function = match tokio::time::timeout(self.config.compile_timeout, compile).await {
            Err(_) => return Err(DeployError::CompileTimeout(self.config.compile_timeout)),
            Ok(Err(join)) => return Err(DeployError::Internal(anyhow::anyhow!("the compile task failed: {join}"))),
            Ok(Ok(result)) => result?,
        };
        let version = Version(function.version().to_owned());
        let recorded = self.stores.functions.deploy(tenant, name, &version, &bytes).await?;
        self.loaded.write().unwrap_or_else(PoisonError::into_inner).insert(version.0, function);
        Ok(recorded)
    }

    /// Makes `version` (default: the one before the active one) active
    /// again, compiled before calls arrive for it.
    pub async fn rollback(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<&Version>,
    ) -> Result<FunctionRecord, DeployError> {
        let record = self.stores.functions.rollback(tenant, name, version).await?;
        self.function(record.active.as_str()).await.map_err(DeployError::Internal)?;
        Ok(record)
    }

    /// Runs the meter over every usage record not yet aggregated and adds
    /// the results to the hourly totals. With several front doors sharing
    /// Redis, a batch another node committed first is simply skipped.
    pub async fn aggregate_usage(&self) -> anyhow::Result<()> {
        const BATCH: usize = 1000;
        let _serialized = self.aggregation.lock().await;
        loop {
            let batch = self.stores.usage.pending(BATCH).await.context("cannot read the usage log")?;
            if batch.entries.is_empty() {
                return Ok(());
            }
            let mut by_hour: HashMap<u64, Vec<UsageRecord>> = HashMap::new();
            for entry in &batch.entries {
                let record =
                    crate::meter::record(&entry.job_id.0, entry.tenant.as_str(), &entry.function, &entry.usage);
                by_hour.entry(entry.at_ms / BUCKET_MS * BUCKET_MS).or_default().push(record);
            }
            let mut deltas = Vec::new();
            for (hour_ms, records) in by_hour {
                let totals = self
                    .meter
                    .aggregate(&self.runtime, records, self.config.prices)
                    .await
                    .context("the meter failed")?;
                deltas.extend(totals.into_iter().map(|total| Bucket {
                    tenant: TenantId(total.tenant),
                    function: total.function,
                    hour_ms,
                    invocations: total.invocations,
                    failures: total.failures,
                    cpu_us: total.cpu_us,
                    wall_us: total.wall_us,
                    bytes_in: total.bytes_in,
                    bytes_out: total.bytes_out,
                    cost_micros: total.cost_micros,
                }));
            }
            match self.stores.usage.commit(&batch, &deltas).await {
                Ok(()) => {}
                // Another node counted this batch first; look again from where it left off.
                Err(CommitError::AlreadyAggregated) => {}
                Err(CommitError::Store(err)) => return Err(err).context("cannot save usage totals"),
            }
        }
    }
}

/// Function and tenant names appear in URL paths: keep them plain.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
