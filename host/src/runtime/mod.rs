//! The sandbox: one shared wasmtime [`Engine`], components validated and
//! compiled once, and a fresh, tightly limited [`Store`] for every call.
//!
//! Every call gets:
//! - a memory limit over the sum of all its linear memories and tables
//!   ([`CallLimiter`]), reported as `memory_limit`, and caps on the core
//!   instances, memories and tables its component creates (checked at
//!   deploy from the component's structure, and again when it is
//!   instantiated);
//! - a bounded WASI resource table, since its entries live on the host;
//! - a wall-clock deadline enforced twice: an epoch callback interrupts
//!   CPU-bound guests, and a timer drops the call future, which also ends a
//!   guest blocked in a host call such as `sleep`;
//! - an output cap, and capped stdout/stderr ([`log`]);
//! - WASI 0.2 with nothing granted: no preopens, env, args or sockets, stdin
//!   closed;
//! - a [`Usage`] record of what it consumed, whatever its outcome.
//!
//! A component implements one of two worlds ([`World`]): Sluice's
//! `transform`, or the standard `wasi:http/proxy` (`http`), called with an
//! HTTP request carried as `message/http` ([`crate::http_message`]).
//!
//! Submodules: [`bindings`] (generated from `wit/`), [`config`], [`error`],
//! `cache` (compiled artifacts on disk), `http` (calling a `wasi:http`
//! component), `limiter`, `log`, `cpu`, `shape` (counting a component's
//! instances), `usage`.

pub mod bindings;
mod cache;
pub mod config;
mod cpu;
pub mod error;
mod http;
mod limiter;
pub mod log;
mod shape;
pub mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice_core::{CallOutput, CallRequest, Outcome, World};
use wasmtime::component::{Component, Linker, ResourceTable, ResourceTableError};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use bindings::transform::{TransformPre, sluice::function::types};
use cache::ArtifactCache;
use cpu::CpuTimed;
use limiter::{CallLimiter, Counts};
use log::CappedPipe;
use shape::Shape;

pub use config::{CallLimits, MIB, RuntimeConfig};
pub use error::{InvokeError, LoadError, RuntimeError};
pub use log::CallLog;
pub use usage::Usage;

/// Everything one call produced: its result, what it cost, what it printed.
#[derive(Debug, Clone)]
pub struct Invocation<T = CallOutput> {
    /// The output, or why there is none.
    pub result: Result<T, InvokeError>,
    /// Resources consumed (always filled, failures included).
    pub usage: Usage,
    /// Captured stdout/stderr.
    pub log: CallLog,
}

/// A component's version: the content address of its bytes, `sha256:<hex>`.
pub fn version_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A component that passed validation: compiled, linked, ready to
/// instantiate cheaply for every call.
#[derive(Clone)]
pub struct Function {
    version: String,
    size: usize,
    pre: Pre,
}

/// A component ready to instantiate, by the world it implements.
#[derive(Clone)]
enum Pre {
    Transform(TransformPre<CallState>),
    Http(ProxyPre<CallState>),
}

impl Function {
    /// Content address of the component bytes: `sha256:<hex>`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The world the component implements.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Transform(_) => World::Transform,
            Pre::Http(_) => World::Http,
        }
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let world = self.world();
        f.debug_struct("Function")
            .field("version", &self.version)
            .field("size", &self.size)
            .field("world", &world)
            .finish()
    }
}

/// Per-call host state: WASI context, its resource table, the limiter and
/// the captured output streams.
pub struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: http::SandboxHooks,
    table: ResourceTable,
    limiter: CallLimiter,
    stdout: CappedPipe,
    stderr: CappedPipe,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The shared runtime. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    config: RuntimeConfig,
    cache: Option<ArtifactCache>,
    // Held for its Drop, which stops the ticking thread.
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine (pooling allocator, epoch interruption, optional
    /// fuel), links WASI and opens the artifact cache.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let mut wasm = wasmtime::Config::new();
        wasm.epoch_interruption(true);
        wasm.consume_fuel(config.fuel);
        if config.pooling {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(config.max_instances)
                // A wasip2 component holds a handful of core instances
                // (the program plus small shims), one memory and a few tables.
                .total_core_instances(config.max_instances.saturating_mul(8))
                .total_memories(config.max_instances.saturating_mul(2))
                .total_tables(config.max_instances.saturating_mul(4))
                .total_stacks(config.max_instances)
                .max_core_instances_per_component(config.max_core_instances_per_component)
                .max_memories_per_component(config.max_memories_per_component)
                .max_tables_per_component(config.max_tables_per_component)
                .max_memory_size(config.memory_limit)
                .linear_memory_keep_resident(config.keep_resident)
                .table_keep_resident(64 * 1024)
                // Reset only the pages a call dirtied (Linux 6.7+), not the
                // whole resident prefix: most calls touch a fraction of it.
                .pagemap_scan(wasmtime::Enabled::Auto);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|err| RuntimeError::Engine(format!("{err:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|err| RuntimeError::Linker(format!("{err:#}")))?;
        // `wasi:http` types for components that serve HTTP; its outgoing
        // handler refuses every request (see `http::SandboxHooks`).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|err| RuntimeError::Linker(format!("{err:#}")))?;

        let cache = config.cache_dir.as_deref().map(|dir| ArtifactCache::open(dir, &engine)).transpose()?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(Self { engine, linker, config, cache, _ticker: ticker })
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Validates and compiles a `transform` or `wasi:http/proxy` component
    /// (or loads it from the artifact cache), ready to call.
    pub fn load(&self, bytes: &[u8]) -> Result<Function, LoadError> {
        let (component, version) = self.compile(bytes)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|err| LoadError::Imports(format!("{err:#}")))?;
        let pre = match TransformPre::new(pre.clone()) {
            Ok(transform) => Pre::Transform(transform),
            Err(not_transform) => match ProxyPre::new(pre) {
                Ok(proxy) => Pre::Http(proxy),
                Err(_) => {
                    return Err(LoadError::WrongWorld {
                        world: "transform",
                        reason: format!(
                            "{not_transform:#}; nor is it a `wasi:http/proxy` component \
                             (it does not export `wasi:http/incoming-handler`)"
                        ),
                    });
                }
            },
        };
        Ok(Function { version, size: bytes.len(), pre })
    }

    /// Checks the bytes are a component, then compiles it or loads its
    /// cached artifact. Returns the component and its `sha256:` version.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<(Component, String), LoadError> {
        check_component_header(bytes)?;
        // Counted before compiling, so an oversized component costs no
        // compile, and before the cache, so a lowered cap applies to
        // components compiled under the old one.
        let shape = shape::count(bytes).map_err(|err| LoadError::Compile(err.to_string()))?;
        self.check_shape(shape)?;
        let version = version_of(bytes);
        let digest_hex = version.trim_start_matches("sha256:").to_owned();
        let component = match self.cache.as_ref().and_then(|cache| cache.load(&self.engine, &digest_hex)) {
            Some(component) => component,
            None => {
                let component =
                    Component::new(&self.engine, bytes).map_err(|err| LoadError::Compile(format!("{err:#}")))?;
                if let Some(cache) = &self.cache {
                    cache.store(&digest_hex, &component);
                }
                component
            }
        };
        // Wasmtime's own count of memories and tables after flattening the
        // component, for anything the structural count could not see.
        if let Some(required) = component.resources_required() {
            self.check_shape(Shape {
                core_instances: 0,
                memories: u64::from(required.num_memories),
                tables: u64::from(required.num_tables),
            })?;
        }
        Ok((component, version))
    }

    /// Refuses a component that creates more than the per-component caps.
    fn check_shape(&self, shape: Shape) -> Result<(), LoadError> {
        let config = &self.config;
        for (what, count, cap) in [
            ("core instances", shape.core_instances, config.max_core_instances_per_component),
            ("memories", shape.memories, config.max_memories_per_component),
            ("tables", shape.tables, config.max_tables_per_component),
        ] {
            if count > u64::from(cap) {
                return Err(LoadError::TooComplex { what, count, cap });
            }
        }
        Ok(())
    }

    /// The versions (`sha256:<hex>`) whose compiled artifacts are in the
    /// cache and were written more than `settled` ago (younger ones may
    /// belong to a deploy not yet recorded).
    pub fn cached_versions(&self, settled: Duration) -> Vec<String> {
        let Some(cache) = &self.cache else { return Vec::new() };
        cache.digests_older_than(settled).into_iter().map(|hex| format!("sha256:{hex}")).collect()
    }

    /// Drops the cached artifact of `version` (`sha256:<hex>`) once no
    /// function references its component any more.
    pub fn forget(&self, version: &str) {
        let digest_hex = version.strip_prefix("sha256:").filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if let (Some(cache), Some(digest_hex)) = (&self.cache, digest_hex) {
            cache.remove(digest_hex);
        }
    }

    pub(crate) fn linker(&self) -> &Linker<CallState> {
        &self.linker
    }

    /// Calls `function` with the runtime's default limits.
    pub async fn invoke(&self, function: &Function, request: CallRequest) -> Invocation {
        self.invoke_with(function, request, &CallLimits::from(&self.config)).await
    }

    /// Calls `function` in a fresh instance under `limits`. A `wasi:http`
    /// component takes its request as `message/http` and answers the same way.
    #[tracing::instrument(skip_all, fields(function = %function.version))]
    pub async fn invoke_with(&self, function: &Function, request: CallRequest, limits: &CallLimits) -> Invocation {
        let pre = match &function.pre {
            Pre::Transform(pre) => pre.clone(),
            Pre::Http(pre) => return self.invoke_http(pre, request, limits).await,
        };
        let bytes_in = request.body.len() as u64;
        let req = types::Request { body: request.body, content_type: request.content_type, params: request.params };
        let max_output = limits.max_output;
        let sandboxed = self
            .run_sandboxed(limits, bytes_in, async move |store: &mut Store<CallState>| {
                let instance = pre.instantiate_async(&mut *store).await.map_err(Failure::Instantiate)?;
                instance.call_handle(&mut *store, &req).await.map_err(Failure::Call)
            })
            .await;
        let result = sandboxed.result.and_then(|returned| into_output(returned, max_output));
        let mut usage = sandboxed.usage;
        usage.bytes_out = result.as_ref().map_or(0, |output| output.body.len() as u64);
        usage.outcome = outcome_of(&result);
        Invocation { result, usage, log: sandboxed.log }
    }

    /// Runs `call` against a fresh store under `limits`, measuring it and
    /// turning traps, deadlines and limits into [`InvokeError`]s. Used by
    /// every world the host calls, so they share one set of guarantees.
    pub(crate) async fn run_sandboxed<R, F>(&self, limits: &CallLimits, bytes_in: u64, call: F) -> Invocation<R>
    where
        F: AsyncFnOnce(&mut Store<CallState>) -> Result<R, Failure>,
    {
        let started = Instant::now();
        let mut store = self.new_store(limits, started + limits.timeout);

        // The timer gets a little slack so a CPU-bound guest is stopped by
        // the epoch trap (precise) and the timer only catches blocked ones.
        let slack = self.config.epoch_tick * 4;
        let (outcome, cpu) = CpuTimed::new(tokio::time::timeout(limits.timeout + slack, call(&mut store))).await;
        let wall = started.elapsed();

        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => Err(classify(failure, store.data(), limits, self.config.max_instances)),
            Err(_elapsed) => Err(InvokeError::Timeout { limit: limits.timeout }),
        };
        let fuel = self.config.fuel.then(|| FUEL_BUDGET - store.get_fuel().unwrap_or(FUEL_BUDGET));
        let state = store.into_data();
        let (stdout, stdout_dropped) = state.stdout.contents();
        let (stderr, stderr_dropped) = state.stderr.contents();
        let usage = Usage {
            outcome: outcome_of(&result),
            wall_us: duration_us(wall),
            cpu_us: duration_us(cpu),
            fuel,
            bytes_in,
            bytes_out: 0,
            peak_memory_bytes: state.limiter.peak() as u64,
        };
        Invocation { result, usage, log: CallLog { stdout, stderr, dropped_bytes: stdout_dropped + stderr_dropped } }
    }
    /// A store with the call's limits, WASI granting nothing, captured
    /// output, and an epoch callback that traps once `deadline` passes.
    fn new_store(&self, limits: &CallLimits, deadline: Instant) -> Store<CallState> {
        let memory = limits.memory.min(self.config.memory_limit);
        let stdout = CappedPipe::new(self.config.max_log);
        let stderr = CappedPipe::new(self.config.max_log);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.config.max_resources);
        let counts = Counts {
            instances: usize::try_from(self.config.max_core_instances_per_component).unwrap_or(usize::MAX),
            memories: usize::try_from(self.config.max_memories_per_component).unwrap_or(usize::MAX),
            tables: usize::try_from(self.config.max_tables_per_component).unwrap_or(usize::MAX),
        };
        let mut http = WasiHttpCtx::new();
        // Header fields the guest builds live on the host: a bound on them.
        http.set_field_size_limit(4 * crate::http_message::MAX_HEAD_BYTES);
        let state = CallState {
            wasi: wasi.build(),
            http,
            http_hooks: http::SandboxHooks,
            table,
            limiter: CallLimiter::new(memory, counts),
            stdout,
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Handles the guest makes itself (`resource.new`) live in wasmtime's
        // tables, also on the host: the same cap as the WASI table.
        store.set_max_component_handles(self.config.max_resources);
        if self.config.fuel {
            // Fuel is for metering only; the deadline bounds the work.
            let _ = store.set_fuel(FUEL_BUDGET);
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(Trap::Interrupt.into())
            } else {
                // Yield so other calls on this thread make progress.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// One long-lived instance of `function`, for measuring what a fresh
    /// instance per call costs. The platform itself never reuses an
    /// instance: state left in linear memory could leak between callers.
    pub async fn warm_instance(&self, function: &Function) -> Result<WarmInstance, InvokeError> {
        let Pre::Transform(pre) = &function.pre else {
            return Err(InvokeError::InvalidInput("only a transform can be kept warm".to_owned()));
        };
        let limits = CallLimits::from(&self.config);
        // No deadline: the owner decides how long to keep calling.
        let far_future = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut store = self.new_store(&limits, far_future);
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|err| classify(Failure::Instantiate(err), store.data(), &limits, self.config.max_instances))?;
        Ok(WarmInstance { store, instance, limits, slots: self.config.max_instances })
    }
}

/// An instance kept across calls; see [`Runtime::warm_instance`].
pub struct WarmInstance {
    store: Store<CallState>,
    instance: bindings::transform::Transform,
    limits: CallLimits,
    slots: u32,
}

impl WarmInstance {
    /// Calls `handle` on the kept instance.
    pub async fn call(&mut self, request: CallRequest) -> Result<CallOutput, InvokeError> {
        let req = types::Request { body: request.body, content_type: request.content_type, params: request.params };
        match self.instance.call_handle(&mut self.store, &req).await {
            Ok(returned) => into_output(returned, self.limits.max_output),
            Err(err) => Err(classify(Failure::Call(err), self.store.data(), &self.limits, self.slots)),
        }
    }
}

/// Fuel given to each call when fuel metering is on: effectively unlimited,
/// since the deadline, not fuel, bounds a call's work.
const FUEL_BUDGET: u64 = u64::MAX;

/// Where a sandboxed call failed: instantiation failures can mean the pool
/// is exhausted, which is load, not the function's fault.
#[derive(Debug)]
pub enum Failure {
    /// Creating the instance failed.
    Instantiate(wasmtime::Error),
    /// The call itself failed.
    Call(wasmtime::Error),
}

fn classify(failure: Failure, state: &CallState, limits: &CallLimits, slots: u32) -> InvokeError {
    let err = match failure {
        Failure::Instantiate(err) if err.is::<wasmtime::PoolConcurrencyLimitError>() => {
            return InvokeError::Overloaded(slots);
        }
        Failure::Instantiate(err) | Failure::Call(err) => err,
    };
    if let Some(Trap::Interrupt) = err.downcast_ref::<Trap>() {
        return InvokeError::Timeout { limit: limits.timeout };
    }
    if let Some(requested) = state.limiter.refused() {
        return InvokeError::MemoryLimit { limit: state.limiter.limit(), requested };
    }
    if let Some(ResourceTableError::Full) = err.downcast_ref::<ResourceTableError>() {
        return InvokeError::Trapped(format!(
            "the function held more than {} WASI resources (streams, pollables…) at once",
            state.table.max_capacity()
        ));
    }
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return InvokeError::Trapped(format!("the function exited (status {}) instead of returning a result", exit.0));
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => InvokeError::Trapped("the function overflowed its stack".to_owned()),
        Some(Trap::UnreachableCodeReached) => {
            InvokeError::Trapped("the function trapped: wasm `unreachable` executed (a panic or abort)".to_owned())
        }
        Some(Trap::MemoryOutOfBounds) => InvokeError::Trapped(
            "the function trapped: out-of-bounds memory access (in Rust guests usually a stack overflow)".to_owned(),
        ),
        Some(trap) => InvokeError::Trapped(format!("the function trapped: {trap}")),
        None => InvokeError::Trapped(format!("the function failed in the sandbox: {err:#}")),
    }
}

/// What `handle` returned, as the host reports it: the function's own
/// errors keep their kind, and an output over the cap is refused.
fn into_output(returned: Result<types::Response, types::Error>, max_output: usize) -> Result<CallOutput, InvokeError> {
    match returned {
        Ok(response) if response.body.len() > max_output => {
            Err(InvokeError::OutputTooLarge { size: response.body.len(), limit: max_output })
        }
        Ok(response) => Ok(CallOutput { body: response.body, content_type: response.content_type }),
        Err(types::Error::InvalidInput(message)) => Err(InvokeError::InvalidInput(message)),
        Err(types::Error::Internal(message)) => Err(InvokeError::FunctionError(message)),
    }
}

fn outcome_of<T>(result: &Result<T, InvokeError>) -> Outcome {
    result.as_ref().map_or_else(|err| Outcome::Failed(err.code()), |_| Outcome::Ok)
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Distinguishes a component from a core module or non-wasm bytes before
/// compiling, so the error can say which it is.
fn check_component_header(bytes: &[u8]) -> Result<(), LoadError> {
    const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    match bytes.get(..8) {
        None => Err(LoadError::NotWasm(format!("{} bytes is too short to be a component", bytes.len()))),
        Some(header) if &header[..4] != b"\0asm" => {
            Err(LoadError::NotWasm("it does not start with the `\\0asm` magic number".to_owned()))
        }
        Some(header) if header[4..] == CORE_VERSION => Err(LoadError::CoreModule),
        Some(header) if header[4..] == COMPONENT_VERSION => Ok(()),
        Some(header) => Err(LoadError::NotWasm(format!("unknown WebAssembly version/layer {:02x?}", &header[4..]))),
    }
}

/// Advances the engine's epoch on a background thread; stopped on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::ErrorCode;

    use super::*;

    #[test]
    fn header_check_names_what_the_bytes_are() {
        assert!(matches!(check_component_header(b"\0asm"), Err(LoadError::NotWasm(_))));
        assert!(matches!(check_component_header(b"GIF89a\0\0\0\0"), Err(LoadError::NotWasm(_))));
        assert!(matches!(check_component_header(b"\0asm\x01\0\0\0"), Err(LoadError::CoreModule)));
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    /// A component-text fixture the build script converted.
    fn wat_fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("SLUICE_GUEST_DIR")).join(name).with_extension("wasm");
        std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
    }

    fn request() -> CallRequest {
        CallRequest { body: b"x".to_vec(), content_type: String::new(), params: Vec::new() }
    }

    #[tokio::test]
    async fn a_component_that_imports_nothing_runs_with_or_without_pooling() {
        for pooling in [true, false] {
            let runtime = Runtime::new(RuntimeConfig { pooling, ..RuntimeConfig::default() }).expect("runtime");
            let function = runtime.load(&wat_fixture("no-imports.wat")).expect("loads");
            let body = vec![7u8; 100_000];
            let request =
                CallRequest { body: body.clone(), content_type: "image/x-test".to_owned(), params: Vec::new() };
            let output = runtime.invoke(&function, request).await.result.expect("echoes");
            assert_eq!(output.body, body);
            assert_eq!(output.content_type, "image/x-test");
        }
    }

    #[tokio::test]
    async fn many_memories_share_one_limit() {
        for pooling in [true, false] {
            let runtime = Runtime::new(RuntimeConfig { pooling, ..RuntimeConfig::default() }).expect("runtime");
            let function = runtime.load(&wat_fixture("many-memories.wat")).expect("within the caps");
            let invocation = runtime.invoke(&function, request()).await;
            let limit = runtime.config().memory_limit;
            match invocation.result {
                Err(InvokeError::MemoryLimit { limit: reported, requested }) => {
                    assert_eq!(reported, limit);
                    assert!(requested > limit, "{requested}");
                }
                other => panic!("expected memory_limit (pooling {pooling}), got {other:?}"),
            }
            // The peak is the sum over the memories: one full hog and the rest.
            let peak = usize::try_from(invocation.usage.peak_memory_bytes).expect("fits");
            assert!(peak > 250 * MIB && peak <= limit, "peak {peak}");
        }
    }

    #[tokio::test]
    async fn the_peak_is_the_sum_of_every_memory() {
        // Under a limit the three hogs fit in, the call runs and bills all four memories.
        let config = RuntimeConfig { memory_limit: 1024 * MIB, pooling: false, ..RuntimeConfig::default() };
        let runtime = Runtime::new(config).expect("runtime");
        let function = runtime.load(&wat_fixture("many-memories.wat")).expect("within the caps");
        let invocation = runtime.invoke(&function, request()).await;
        assert_eq!(invocation.result.map_err(|err| err.code()), Err(ErrorCode::FunctionError));
        assert_eq!(invocation.usage.peak_memory_bytes, (3 * 250 * MIB + 64 * 1024) as u64);
    }

    #[tokio::test]
    async fn the_wasi_resource_table_is_bounded() {
        let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let function = runtime.load(&wat_fixture("many-handles.wat")).expect("loads");
        let invocation = runtime.invoke(&function, request()).await;
        match invocation.result {
            Err(InvokeError::Trapped(message)) => {
                assert_eq!(message, "the function held more than 4096 WASI resources (streams, pollables…) at once");
            }
            other => panic!("expected a trap at the resource cap, got {other:?}"),
        }
    }

    #[test]
    fn a_component_over_the_caps_is_refused_with_or_without_pooling() {
        for pooling in [true, false] {
            let runtime = Runtime::new(RuntimeConfig { pooling, ..RuntimeConfig::default() }).expect("runtime");
            match runtime.load(&wat_fixture("too-many-memories.wat")) {
                Err(err @ LoadError::TooComplex { what: "memories", count: 9, cap: 4 }) => {
                    assert_eq!(err.code(), ErrorCode::ComponentTooComplex);
                }
                other => panic!("expected TooComplex (pooling {pooling}), got {other:?}"),
            }
        }
        let strict = Runtime::new(RuntimeConfig { max_core_instances_per_component: 3, ..RuntimeConfig::default() })
            .expect("runtime");
        assert!(matches!(
            strict.load(&wat_fixture("many-memories.wat")),
            Err(LoadError::TooComplex { what: "core instances", count: 4, cap: 3 })
        ));
    }
}
