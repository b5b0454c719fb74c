//! The platform on one node: runtime, queue, stores and meter wired
//! together. The HTTP front door and the worker slots both work through it,
//! and tests can drive it without HTTP.
//!
//! Submodules: [`calls`] (sync calls, async jobs and their idempotency
//! keys), [`compile`] (bounded compile slots), [`tenants`] (deleting a
//! tenant and everything it holds).

pub mod calls;
pub mod compile;
mod loaded;
pub mod tenants;

pub use calls::{Accepted, CallError, SYNC_GRACE, SyncCall, fingerprint};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_core::{ErrorCode, TenantId, Version, World};
use sluice_scheduler::Queue;

use crate::builtins;
use crate::meter::{DEFAULT_PRICES, Meter, PriceTable, UsageRecord, UsageTotal};
use crate::metrics::Metrics;
use crate::runtime::MIB;
use crate::runtime::{Function, LoadError, Runtime, RuntimeConfig};
use crate::store::functions::{FunctionRecord, RegistryError};
use crate::store::usage::{BUCKET_MS, Bucket, CommitError};
use crate::store::{StoreError, Stores};
use compile::Compilers;
use loaded::LoadedFunctions;

/// Settings of one node.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Where compiled artifacts (and, without Redis, all other state) live.
    pub data_dir: PathBuf,
    /// Sandbox limits.
    pub runtime: RuntimeConfig,
    /// Largest call body in bytes.
    pub max_body: usize,
    /// Largest deployable component in bytes, apart from the call body
    /// limit: a Python component from componentize-py is 17 MiB before any
    /// dependency, while call bodies are usually far smaller.
    pub max_component: usize,
    /// Compiles at once on this node (deploys, first calls, warming).
    pub compile_concurrency: usize,
    /// Deploys of one tenant compiling at once on this node; more are
    /// refused with `compile_busy`.
    pub tenant_compiles: usize,
    /// Functions a tenant may have; a deploy of one more is refused with `function_quota`.
    pub max_functions: usize,
    /// Versions kept per function (at least 2); a deploy past it prunes the
    /// oldest inactive ones, never the active version nor its rollback target.
    pub max_versions: usize,
    /// How long hourly usage totals are kept.
    pub usage_retention: Duration,
    /// Per-tenant sustained request rate (requests per second).
    pub rate_per_second: u32,
    /// Per-tenant burst above the rate: large enough that a burst of async
    /// jobs is queued (the queue quota bounds the backlog) rather than
    /// refused at the door.
    pub rate_burst: u32,
    /// Longest a deploy may spend compiling.
    pub compile_timeout: Duration,
    /// Compiled functions kept in memory besides the built-ins; past it the
    /// least recently used is dropped and loads again from the artifact
    /// cache when next called.
    pub max_loaded_functions: usize,
    /// How often a node drops what it holds of versions deleted elsewhere
    /// (see [`Platform::drop_stale_versions`]).
    pub stale_sweep_every: Duration,
    /// Prices the meter applies.
    pub prices: PriceTable,
}

impl PlatformConfig {
    /// Defaults for a node whose data lives in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            runtime: RuntimeConfig { cache_dir: Some(data_dir.join("artifacts")), ..RuntimeConfig::default() },
            data_dir,
            max_body: 16 * MIB,
            max_component: 64 * MIB,
            compile_concurrency: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            tenant_compiles: 1,
            max_functions: 100,
            max_versions: 10,
            usage_retention: crate::store::usage::DEFAULT_RETENTION,
            rate_per_second: 100,
            rate_burst: 1000,
            compile_timeout: Duration::from_secs(60),
            max_loaded_functions: 256,
            stale_sweep_every: Duration::from_secs(300),
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
    /// The component is over the size limit.
    #[error("the component is {size} bytes; this node accepts at most {limit} bytes (--max-component-mb)")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The tenant already has its share of compiles running.
    #[error("{0} deploy(s) of this tenant are already compiling; retry when they end")]
    CompileBusy(usize),
    /// Every compile slot of the node stayed busy.
    #[error("every compiler of this node stayed busy for {}s; retry shortly", .0.as_secs())]
    CompilersBusy(Duration),
    /// One more function would pass the tenant's quota.
    #[error("the tenant already has {0} functions, its quota (--max-functions); delete one first")]
    FunctionQuota(usize),
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
            Self::TooLarge { .. } => ErrorCode::ComponentTooLarge,
            Self::CompileBusy(_) => ErrorCode::CompileBusy,
            Self::CompilersBusy(_) => ErrorCode::Overloaded,
            Self::FunctionQuota(_) => ErrorCode::FunctionQuota,
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
    /// The world that version implements: which URL calls it.
    pub world: World,
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
    /// The built-in meter's version, whose artifact is kept.
    meter_version: String,
    /// Compiled functions by version; filled on deploy, on demand and at
    /// start, bounded by `max_loaded_functions`.
    loaded: LoadedFunctions<Function>,
    /// Serializes aggregations so a record is never counted twice.
    aggregation: tokio::sync::Mutex<()>,
    /// Bounds compiles on the node and per tenant.
    pub compilers: Compilers,
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

        let loaded = LoadedFunctions::new(config.max_loaded_functions);
        let mut builtin_versions = HashMap::new();
        for builtin in builtins::TRANSFORMS {
            let function = runtime
                .load(builtin.component)
                .with_context(|| format!("the built-in `{}` does not load", builtin.name))?;
            builtin_versions.insert(builtin.name, Version::from(function.version()));
            let version = function.version().to_owned();
            loaded.pin(&version, function);
        }
        let compilers = Compilers::new(config.compile_concurrency, config.tenant_compiles);
        Ok(Arc::new(Self {
            runtime,
            queue,
            stores,
            metrics: Metrics::new(),
            config,
            meter,
            builtin_versions,
            meter_version: crate::runtime::version_of(builtins::METER),
            loaded,
            aggregation: tokio::sync::Mutex::new(()),
            compilers,
        }))
    }

    /// Compiles the active version of every deployed function ahead of its
    /// first call, one at a time under the compile bound (from the artifact
    /// cache after a restart, so usually quick). A node runs this in the
    /// background and serves at once: a call that arrives first compiles
    /// its function on demand. Older versions compile when rolled back to.
    pub async fn warm(&self) {
        let started = std::time::Instant::now();
        let versions = match self.stores.functions.active_versions().await {
            Ok(versions) => versions,
            Err(err) => {
                tracing::warn!(cause = %err, "cannot list deployed versions; they load on first use");
                return;
            }
        };
        let count = versions.len();
        for version in versions {
            if let Err(err) = self.function(version.as_str()).await {
                tracing::warn!(%version, cause = %err, "a deployed version does not load");
            }
        }
        tracing::info!(versions = count, elapsed_ms = started.elapsed().as_millis() as u64, "warmed");
    }

    /// The function `name` as `tenant` sees it: a built-in (their names
    /// cannot be deployed over, so no store lookup is needed), else its own.
    pub async fn resolve(&self, tenant: &TenantId, name: &str) -> Result<Option<Resolved>, StoreError> {
        if let Some(builtin) = self.builtin(name) {
            return Ok(Some(builtin));
        }
        let record = self.stores.functions.get(tenant, name).await?;
        Ok(record.map(|record| {
            let world = record.versions.iter().find(|v| v.version == record.active).map(|v| v.world);
            Resolved { name: name.to_owned(), version: record.active, world: world.unwrap_or_default() }
        }))
    }

    /// The built-in `name`, if there is one.
    pub fn builtin(&self, name: &str) -> Option<Resolved> {
        self.builtin_versions.get(name).map(|version| Resolved {
            name: name.to_owned(),
            version: version.clone(),
            world: World::Transform,
        })
    }

    /// True when `name` is a built-in.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin_versions.contains_key(name)
    }

    /// The compiled function for `version`, loading it from the registry on first use.
    pub async fn function(&self, version: &str) -> anyhow::Result<Function> {
        if let Some(function) = self.loaded.get(version) {
            return Ok(function);
        }
        let bytes = self
            .stores
            .functions
            .component(&Version::from(version))
            .await
            .context("cannot fetch the component bytes")?;
        let runtime = Arc::clone(&self.runtime);
        let permit = self.compilers.permit(None).await;
        // Compiling (or reading the artifact cache) is blocking work; the
        // thread holds the compile slot until it ends.
        let function = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            runtime.load(&bytes)
        })
        .await
        .context("the compile task failed")?
        .context("the stored component no longer loads")?;
        self.loaded.insert(version, function.clone());
        Ok(function)
    }

    /// Validates, compiles (bounded in time and in compiles at once) and
    /// records a deployment, pruning the function's oldest versions past
    /// the version quota.
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
        if bytes.len() > self.config.max_component {
            return Err(DeployError::TooLarge { size: bytes.len(), limit: self.config.max_component });
        }
        // Checked before compiling, so a tenant at its quota costs no CPU.
        // Deploys of one tenant compile at most `tenant_compiles` at once, so
        // with the default of one, two new names cannot both slip past it.
        let slot = self.compilers.tenant_slot(tenant).ok_or(DeployError::CompileBusy(self.compilers.per_tenant()))?;
        let functions = self.stores.functions.list(tenant).await?;
        if functions.len() >= self.config.max_functions && !functions.iter().any(|f| f.name == name) {
            return Err(DeployError::FunctionQuota(self.config.max_functions));
        }
        // Waiting for a node-wide slot is bounded like the compile itself.
        let permit = tokio::time::timeout(self.config.compile_timeout, self.compilers.permit(Some(slot)))
            .await
            .map_err(|_| DeployError::CompilersBusy(self.config.compile_timeout))?;
        let runtime = Arc::clone(&self.runtime);
        let bytes = Arc::new(bytes);
        let compile_input = Arc::clone(&bytes);
        // Compilation is CPU-bound: keep it off the async threads. wasmtime
        // cannot cancel a compile, so one that overruns keeps its thread and
        // its compile slots until it finishes; the caller gets an answer and
        // nothing is recorded.
        let compile = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            runtime.load(&compile_input)
        });
        let function = match tokio::time::timeout(self.config.compile_timeout, compile).await {
            Err(_) => return Err(DeployError::CompileTimeout(self.config.compile_timeout)),
            Ok(Err(join)) => return Err(DeployError::Internal(anyhow::anyhow!("the compile task failed: {join}"))),
            Ok(Ok(result)) => result?,
        };
        let version = Version(function.version().to_owned());
        let deployed = (&version, function.world());
        let deployment =
            self.stores.functions.deploy_keeping(tenant, name, deployed, &bytes, self.config.max_versions).await?;
        self.loaded.insert(&version.0, function);
        self.forget(&deployment.collected);
        Ok((deployment.record, deployment.is_new))
    }

    /// Deletes the tenant's function; the bytes and compiled code of its
    /// versions no other function uses are collected.
    pub async fn delete(&self, tenant: &TenantId, name: &str) -> Result<FunctionRecord, RegistryError> {
        let removal = self.stores.functions.remove(tenant, name).await?;
        self.forget(&removal.collected);
        Ok(removal.record)
    }

    /// The versions this node holds compiled in memory, built-ins included.
    pub fn loaded_versions(&self) -> Vec<String> {
        self.loaded.versions()
    }

    /// Drops what this node holds of versions no function references any
    /// more: compiled functions in memory and artifacts on disk. The node
    /// that collects a version forgets it at once; every other node (a
    /// worker that ran it, a front door that served it) forgets it here,
    /// every `stale_sweep_every`. Artifacts younger than the compile
    /// timeout are left, as they may be a deploy's not yet recorded.
    /// Returns how many versions were dropped.
    pub async fn drop_stale_versions(&self) -> Result<usize, StoreError> {
        let stored: std::collections::HashSet<String> =
            self.stores.functions.all_versions().await?.into_iter().map(|version| version.0).collect();
        let keep = |version: &str| {
            stored.contains(version)
                || version == self.meter_version
                || self.builtin_versions.values().any(|builtin| builtin.as_str() == version)
        };
        let mut dropped = 0;
        for version in self.loaded.versions() {
            if !keep(&version) {
                self.loaded.remove(&version);
                dropped += 1;
            }
        }
        let settled = self.config.compile_timeout + SYNC_GRACE;
        for version in self.runtime.cached_versions(settled) {
            if !keep(&version) {
                self.runtime.forget(&version);
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Drops the compiled code of collected versions on this node (other
    /// nodes drop theirs in [`Self::drop_stale_versions`]).
    fn forget(&self, collected: &[Version]) {
        if collected.is_empty() {
            return;
        }
        for version in collected {
            // A tenant may have deployed a built-in's exact bytes; the built-in stays.
            if self.builtin_versions.values().any(|builtin| builtin == version) {
                continue;
            }
            self.loaded.remove(version.as_str());
            self.runtime.forget(version.as_str());
        }
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
    ///
    /// The work runs on the meter's own thread, below the threads answering
    /// requests: a minute of calls is hundreds of meter calls back to back,
    /// each holding its thread for milliseconds, which on a request thread
    /// would stall every connection that thread serves.
    pub async fn aggregate_usage(self: &Arc<Self>) -> anyhow::Result<()> {
        let Some(meter_thread) = meter_runtime() else { return self.aggregate_here().await };
        let platform = Arc::clone(self);
        meter_thread.spawn(async move { platform.aggregate_here().await }).await.context("the meter thread failed")?
    }

    async fn aggregate_here(&self) -> anyhow::Result<()> {
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
                let totals = self.meter.aggregate(&self.runtime, records).await.context("the meter failed")?;
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

impl Platform {
    /// The cost in micro-units of each of `totals` (summed over the period a
    /// bill covers), priced by the meter at the node's prices.
    pub async fn price(&self, totals: &[Bucket]) -> anyhow::Result<Vec<u64>> {
        if totals.is_empty() {
            return Ok(Vec::new());
        }
        let totals = totals
            .iter()
            .map(|b| UsageTotal {
                tenant: b.tenant.to_string(),
                function: b.function.clone(),
                invocations: b.invocations,
                failures: b.failures,
                cpu_us: b.cpu_us,
                wall_us: b.wall_us,
                bytes_in: b.bytes_in,
                bytes_out: b.bytes_out,
            })
            .collect();
        self.meter.price(&self.runtime, totals, self.config.prices).await.context("the meter cannot price usage")
    }
}

/// Function and tenant names appear in URL paths: keep them plain.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The thread usage aggregation runs on, at [`crate::priority::METER_NICENESS`]
/// below the threads answering requests; `None` (aggregate where the
/// caller runs) if it cannot be started.
fn meter_runtime() -> Option<&'static tokio::runtime::Handle> {
    static METER: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    METER
        .get_or_init(|| crate::priority::lowered_runtime("sluice-meter", 1, crate::priority::METER_NICENESS).ok())
        .as_ref()
        .map(tokio::runtime::Runtime::handle)
}
