//! The measurements behind each goal of the report (P1–P6, P10).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use sluice::platform::PlatformConfig;
use sluice::runtime::{Function, Runtime, RuntimeConfig};
use sluice::server::{self, ServeConfig};
use sluice_core::CallRequest;
use sluice_resize::ResizeParams;

use crate::loadgen::{self, LoadResult, Target};
use crate::queue_load::{self, QueueThroughput};

/// How long and how often each scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    /// Timed runs per photo and side (P1).
    pub photo_runs: usize,
    /// Trivial calls (P2).
    pub trivial_calls: usize,
    /// Length of each throughput or load run (P3, P4, P6).
    pub run: Duration,
    /// Sequential calls per mode (P5), and of the in-process WASM resize (P4's floor).
    pub sequential_calls: usize,
    /// Offered load as fractions of the maximum (P4's curve).
    pub load_fractions: &'static [f64],
    /// Async jobs in the noisy tenant's burst (P11).
    pub backlog_jobs: usize,
    /// Length of the soak (P8), and of each of its windows.
    pub soak: Duration,
    /// See `soak`.
    pub soak_window: Duration,
    /// Tiny jobs moved through one Redis (P10).
    pub queue_jobs: usize,
}

impl Effort {
    /// [`Effort::QUICK`] or [`Effort::FULL`].
    pub const fn of(quick: bool) -> Self {
        if quick { Self::QUICK } else { Self::FULL }
    }

    /// About six minutes on two cores.
    pub const QUICK: Self = Self {
        photo_runs: 3,
        trivial_calls: 3_000,
        run: Duration::from_secs(8),
        sequential_calls: 300,
        load_fractions: &[0.5, 0.7, 0.9],
        backlog_jobs: 2_000,
        soak: Duration::from_secs(40),
        soak_window: Duration::from_secs(4),
        queue_jobs: 5_000,
    };
    /// The full run.
    pub const FULL: Self = Self {
        photo_runs: 9,
        trivial_calls: 30_000,
        run: Duration::from_secs(25),
        sequential_calls: 2_000,
        load_fractions: &[0.3, 0.5, 0.7, 0.8, 0.9],
        backlog_jobs: 10_000,
        soak: Duration::from_secs(600),
        soak_window: Duration::from_secs(20),
        queue_jobs: 50_000,
    };
}

/// Producers and workers of the tiny-jobs run (P10): a few front doors'
/// worth of enqueuers and a node's worth of worker slots.
pub const QUEUE_PRODUCERS: usize = 4;
/// See [`QUEUE_PRODUCERS`].
pub const QUEUE_WORKERS: usize = 8;

/// P10: tiny jobs through the Redis at `redis_url`, under a prefix of
/// their own so no other scenario's keys are touched.
pub async fn tiny_jobs_through_redis(redis_url: &str, effort: Effort) -> anyhow::Result<QueueThroughput> {
    tiny_jobs_on(redis_url, effort.queue_jobs, QUEUE_PRODUCERS, QUEUE_WORKERS).await
}

async fn tiny_jobs_on(
    redis_url: &str,
    jobs: usize,
    producers: usize,
    workers: usize,
) -> anyhow::Result<QueueThroughput> {
    let queue = sluice_scheduler::connect(redis_url, queue_load::unthrottled_config(), "sluice-p10")
        .await
        .context("connect to redis for the tiny jobs")?;
    queue_load::tiny_jobs(&queue, jobs, producers, workers, Duration::from_secs(600)).await
}

/// `sluice-bench queue`: P10 with the caller's counts, on the loopback
/// Redis at `redis_url` or on a `redis-server` started for it.
pub async fn tiny_jobs_cli(
    redis_url: Option<&str>,
    jobs: u64,
    producers: u64,
    workers: u64,
) -> anyhow::Result<QueueThroughput> {
    let count = |n: u64| usize::try_from(n).context("count");
    let (jobs, producers, workers) = (count(jobs)?, count(producers)?, count(workers)?);
    match redis_url {
        Some(url) => {
            loadgen::ensure_loopback_url(url)?;
            tiny_jobs_on(url, jobs, producers, workers).await
        }
        None => {
            let redis = tokio::task::spawn_blocking(sluice_testkit::spawn_redis)
                .await
                .context("start redis-server (scripts/test.sh installs it)")?;
            tiny_jobs_on(&redis.url, jobs, producers, workers).await
        }
    }
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Repository root (the bench crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A runtime with the report's artifact cache.
pub fn runtime() -> anyhow::Result<Arc<Runtime>> {
    let config =
        RuntimeConfig { cache_dir: Some(repo_root().join("target/bench-artifacts")), ..RuntimeConfig::default() };
    Ok(Arc::new(Runtime::new(config).context("the runtime starts")?))
}

/// One photo's native and WASM times (P1).
#[derive(Debug, Clone)]
pub struct PhotoTiming {
    /// File name.
    pub name: String,
    /// Median native ms.
    pub native_ms: f64,
    /// Median WASM ms (fresh sandbox per call).
    pub wasm_ms: f64,
    /// Bytes of the encoded output (the same both sides).
    pub output_bytes: usize,
    /// Median native ms of decode, resize and encode.
    pub native_stages: [f64; 3],
    /// Median ms of the same stages timed inside the sandbox (the
    /// `resize-stages` probe: the resize's code, a clock around each stage).
    pub wasm_stages: [f64; 3],
}

impl PhotoTiming {
    /// WASM time over native time.
    pub fn ratio(&self) -> f64 {
        self.wasm_ms / self.native_ms
    }
}

/// The resize parameters P1 and P9 use.
pub fn report_params() -> Vec<(String, String)> {
    vec![("width".to_owned(), "400".to_owned())]
}

/// P1: decode → resize as `params` ask → encode, the same code natively
/// and as the built-in component, `runs` times per photo. Photos the
/// resize refuses (either side) are returned separately with the reason.
pub async fn native_vs_wasm(
    photos: &[PathBuf],
    params: &[(String, String)],
    runs: usize,
) -> anyhow::Result<(Vec<PhotoTiming>, Vec<(String, String)>)> {
    let runtime = runtime()?;
    let component = sluice::builtins::transform("resize").context("the built-in resize")?.component;
    let resize = runtime.load(component).context("resize loads")?;
    let stages_probe = runtime.load(&guest(RESIZE_STAGES_PROBE)?).context("the stages probe loads")?;
    let params = params.to_vec();
    let native_params = ResizeParams::parse(&params).context("resize parameters")?;
    let (mut timings, mut skipped) = (Vec::new(), Vec::new());
    let bar = indicatif::ProgressBar::new(photos.len() as u64);
    bar.set_prefix("P1 native vs WASM");
    for path in photos {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        bar.set_message(name.clone());
        let input = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let request = || CallRequest { body: input.clone(), content_type: String::new(), params: params.clone() };
        let output_bytes = match sluice_resize::transform(&input, &native_params) {
            Ok(encoded) => encoded.bytes.len(),
            Err(err) => {
                skipped.push((name, format!("refused natively: {err}")));
                bar.inc(1);
                continue;
            }
        };
        if let Err(err) = runtime.invoke(&resize, request()).await.result {
            skipped.push((name, format!("refused in WASM: {err}")));
            bar.inc(1);
            continue;
        }
        let (mut native, mut wasm) = (Vec::new(), Vec::new());
        let (mut native_stages, mut wasm_stages) = (<[Vec<f64>; 3]>::default(), <[Vec<f64>; 3]>::default());
        for _ in 0..runs.max(1) {
            let (total, stages) = native_in_stages(&input, &native_params);
            native.push(total);
            for (kept, ms) in native_stages.iter_mut().zip(stages) {
                kept.push(ms);
            }
            let started = Instant::now();
            std::hint::black_box(runtime.invoke(&resize, request()).await.result.ok());
            wasm.push(started.elapsed().as_secs_f64() * 1e3);
        }
        // After the timed calls, not between them: another component in
        // between would take the resize's warm instance slots.
        for _ in 0..runs.max(1) {
            let timed = runtime.invoke(&stages_probe, request()).await.result.context("the stages probe")?;
            for (kept, ms) in wasm_stages.iter_mut().zip(probe_stages(&timed.body)?) {
                kept.push(ms);
            }
        }
        timings.push(PhotoTiming {
            name,
            native_ms: median(&mut native),
            wasm_ms: median(&mut wasm),
            output_bytes,
            native_stages: native_stages.each_mut().map(|v| median(v)),
            wasm_stages: wasm_stages.each_mut().map(|v| median(v)),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((timings, skipped))
}

/// The resize's stage-timing probe, built with the other guests.
pub const RESIZE_STAGES_PROBE: &str = "sluice_bench_resize_stages";

/// One native resize: the whole in ms, and decode, resize and encode.
fn native_in_stages(input: &[u8], params: &ResizeParams) -> (f64, [f64; 3]) {
    let started = Instant::now();
    let mut ends = [0.0; 3];
    let result = sluice_resize::transform_in_stages(input, params, |stage| {
        ends[stage.index()] = started.elapsed().as_secs_f64() * 1e3;
    });
    let total = started.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(result.ok());
    (total, [ends[0], ends[1] - ends[0], ends[2] - ends[1]])
}

/// The probe's answer as decode, resize and encode ms.
fn probe_stages(body: &[u8]) -> anyhow::Result<[f64; 3]> {
    let answer: serde_json::Value = serde_json::from_slice(body).context("the stages probe answers JSON")?;
    let ms =
        |key: &str| answer[key].as_f64().map(|ns| ns / 1e6).with_context(|| format!("no {key} in the probe's answer"));
    Ok([ms("decode_ns")?, ms("resize_ns")?, ms("encode_ns")?])
}

/// P2's two measurements, µs per call (p50).
#[derive(Debug, Clone, Copy)]
pub struct PerCallOverhead {
    /// The hostile fixture's `echo` (a Rust guest importing ~100 WASI
    /// functions), empty body: the goal's number.
    pub echo_us: f64,
    /// A component importing nothing (`no-imports.wat`): the floor the
    /// host itself sets, so the difference is linking the imports.
    pub no_imports_us: f64,
}

/// P2: µs per call (p50) to instantiate, call and drop a trivial function,
/// and the same for a component with no imports. The two alternate call by
/// call so load on a shared machine weighs on both alike.
pub async fn per_call_overhead(effort: Effort) -> anyhow::Result<PerCallOverhead> {
    let runtime = runtime()?;
    let guests = repo_root().join("target/guests/wasm32-wasip2/release");
    let load = |file: &str| -> anyhow::Result<Function> {
        let path = guests.join(file);
        let component = std::fs::read(&path).with_context(|| format!("{} (built with the host)", path.display()))?;
        runtime.load(&component).with_context(|| format!("{file} loads"))
    };
    let functions = [load("sluice_fixture_hostile.wasm")?, load("no-imports.wasm")?];
    let request = || CallRequest {
        body: Vec::new(),
        content_type: String::new(),
        params: vec![("act".to_owned(), "echo".to_owned())],
    };
    for function in &functions {
        for _ in 0..100 {
            runtime.invoke(function, request()).await.result.context("echo works")?;
        }
    }
    let mut micros = [Vec::with_capacity(effort.trivial_calls), Vec::with_capacity(effort.trivial_calls)];
    for _ in 0..effort.trivial_calls {
        for (function, micros) in functions.iter().zip(&mut micros) {
            let started = Instant::now();
            std::hint::black_box(runtime.invoke(function, request()).await.result.ok());
            micros.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    let [echo, no_imports] = &mut micros;
    Ok(PerCallOverhead { echo_us: median(echo), no_imports_us: median(no_imports) })
}

/// The resize of `input` to 400 px wide as a sequential in-process WASM
/// call (fresh sandbox each time, no HTTP, no queue): p50 and p99 in ms,
/// the floor under P4's HTTP latencies.
pub async fn wasm_call_latency(input: &[u8], calls: usize) -> anyhow::Result<(f64, f64)> {
    let runtime = runtime()?;
    let component = sluice::builtins::transform("resize").context("the built-in resize")?.component;
    let resize = runtime.load(component).context("resize loads")?;
    let request = || CallRequest {
        body: input.to_vec(),
        content_type: String::new(),
        params: vec![("width".to_owned(), "400".to_owned())],
    };
    runtime.invoke(&resize, request()).await.result.context("resize works")?;
    let mut latency = loadgen::histogram();
    for _ in 0..calls {
        let started = Instant::now();
        std::hint::black_box(runtime.invoke(&resize, request()).await.result.ok());
        latency.saturating_record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    let ms = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1000.0;
    Ok((ms(0.5), ms(0.99)))
}

/// A JPEG of about `target` bytes made from a test photo (re-encoded at
/// the quality that lands closest), so P3 uses a 256 KB input.
pub fn jpeg_near(target: usize) -> anyhow::Result<Vec<u8>> {
    let source = image::load_from_memory(&crate::photo("harvesters.jpeg")).context("decode harvesters.jpeg")?;
    let encode = |quality: u8| -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
        source.write_with_encoder(encoder).context("encode JPEG")?;
        Ok(out)
    };
    let mut best = encode(85)?;
    for quality in (40..=98).step_by(2) {
        let candidate = encode(quality)?;
        if candidate.len().abs_diff(target) < best.len().abs_diff(target) {
            best = candidate;
        }
    }
    Ok(best)
}

/// Nodes started so far, so each gets a tenant name of its own (nodes on
/// one Redis share tenants).
static NODES: AtomicU64 = AtomicU64::new(0);

/// An in-process node on a free loopback port with `workers` slots and no
/// rate limits; returns its URL, a tenant key and the task.
pub async fn start_node(
    redis: Option<&str>,
    workers: usize,
    data_dir: &Path,
) -> anyhow::Result<(String, String, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let mut platform = PlatformConfig::new(data_dir.to_path_buf());
    platform.runtime.cache_dir = Some(repo_root().join("target/bench-artifacts"));
    platform.rate_per_second = 1_000_000;
    platform.rate_burst = 1_000_000;
    let mut config = ServeConfig::new(platform);
    config.workers = workers;
    config.queue.tenant_concurrency = 100_000;
    config.queue.capacity = 100_000;
    config.admin_token = Some("report-admin".to_owned());
    config.backend.redis_url = redis.map(str::to_owned);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bind loopback")?;
    let url = format!("http://{}", listener.local_addr().context("addr")?);
    let (ready, started) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server::run(listener, config, std::future::pending(), move |_| {
        let _ = ready.send(());
    }));
    started.await.context("the node did not start")?;
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/tenants"))
        .bearer_auth("report-admin")
        .json(&serde_json::json!({"name": format!("report-{}-{}", std::process::id(), NODES.fetch_add(1, Ordering::Relaxed))}))
        .send()
        .await
        .context("create a tenant")?;
    let created: serde_json::Value = response.json().await.context("tenant JSON")?;
    let key = created["api_key"].as_str().context("an API key")?.to_owned();
    Ok((url, key, task))
}

/// P3's native side: `threads` threads resizing `input` back to back for `run`.
pub fn native_throughput(input: &[u8], threads: usize, run: Duration) -> anyhow::Result<f64> {
    let params = ResizeParams::parse(&[("width".to_owned(), "400".to_owned())]).context("params")?;
    let deadline = Instant::now() + run;
    let started = Instant::now();
    let done: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut count = 0usize;
                    while Instant::now() < deadline {
                        if sluice_resize::transform(input, &params).is_ok() {
                            count += 1;
                        }
                    }
                    count
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// The resize target (400 px wide) on a node.
pub fn resize_target(url: &str, key: &str, input: &[u8]) -> anyhow::Result<Target> {
    Ok(Target::new(&format!("{url}/v1/functions/resize/invoke?width=400"), key, Bytes::from(input.to_vec()))?)
}

/// P5: the same sequential sync call on an embedded node and on a Redis-mode
/// node (two local slots each); returns (embedded p50 ms, Redis p50 ms).
pub async fn redis_added_latency(redis_url: &str, effort: Effort) -> anyhow::Result<(f64, f64)> {
    let (embedded_dir, redis_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let embedded = start_node(None, 2, embedded_dir.path()).await?;
    let shared = start_node(Some(redis_url), 2, redis_dir.path()).await?;
    let photo = Bytes::from(crate::photo("peacock.progressive.jpeg"));
    let client = loadgen::client(1);
    let call = |url: &str, key: &str| {
        let request =
            client.post(format!("{url}/v1/functions/resize/invoke?width=50")).bearer_auth(key).body(photo.clone());
        async move {
            let started = Instant::now();
            let response = request.send().await.context("sent")?;
            if !response.status().is_success() {
                bail!("status {}", response.status());
            }
            response.bytes().await.context("body")?;
            Ok(started.elapsed().as_secs_f64() * 1e3)
        }
    };
    let (mut embedded_ms, mut redis_ms) = (Vec::new(), Vec::new());
    // Interleaved blocks, so drift on a noisy machine hits both alike.
    for _ in 0..(effort.sequential_calls / 50).max(1) {
        for _ in 0..50 {
            embedded_ms.push(call(&embedded.0, &embedded.1).await?);
        }
        for _ in 0..50 {
            redis_ms.push(call(&shared.0, &shared.1).await?);
        }
    }
    embedded.2.abort();
    shared.2.abort();
    Ok((median(&mut embedded_ms), median(&mut redis_ms)))
}

/// The `sluice` binary beside this one, built if missing.
pub fn sluice_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("own path")?;
    let binary = exe.with_file_name("sluice");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "--locked", "-p", "sluice"])
            .current_dir(repo_root())
            .status()
            .context("run cargo build for the sluice binary")?;
        if !status.success() || !binary.exists() {
            bail!("cannot build the sluice binary ({status})");
        }
    }
    Ok(binary)
}

/// A `sluice worker` child process, killed on drop.
pub struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    /// Starts `sluice worker` with one slot and waits until it takes jobs.
    pub fn start(binary: &Path, redis_url: &str, name: &str) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(binary)
            .args(["worker", "--redis", redis_url, "--concurrency", "1", "--name", name, "--data-dir"])
            .arg(repo_root().join("target/bench-node"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start sluice worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let ready = lines.next().transpose().context("worker output")?;
        if !ready.is_some_and(|line| line.starts_with("sluice worker ")) {
            let _ = child.kill();
            bail!("sluice worker {name} did not start");
        }
        // Keep draining so the worker never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self(child))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// P6: resize throughput through one front door with 1, 2, … worker processes.
pub async fn worker_scaling(redis_url: &str, input: &[u8], effort: Effort) -> anyhow::Result<Vec<(usize, f64)>> {
    let binary = sluice_binary()?;
    let dir = tempfile::tempdir()?;
    let (url, key, door) = start_node(Some(redis_url), 0, dir.path()).await?;
    let target = resize_target(&url, &key, input)?;
    let mut workers = Vec::new();
    let mut points = Vec::new();
    for count in 1..=cores() {
        workers.push(WorkerProcess::start(&binary, redis_url, &format!("report-w{count}"))?);
        let warm = loadgen::closed_loop(&target, count, Duration::from_secs(2), 10_000, "warm-up", true).await;
        if warm.ok == 0 {
            bail!("no request succeeded with {count} workers");
        }
        let label = format!("P6 {count} worker(s)");
        let result = loadgen::closed_loop(&target, 2 * count, effort.run, 1_000_000, &label, false).await;
        points.push((count, result.throughput()));
    }
    drop(workers);
    door.abort();
    Ok(points)
}

/// P3 and P4 on an embedded node: the maximum sustainable rate (closed loop)
/// and the latency at fractions of it (open loop).
pub struct HttpRuns {
    /// Closed-loop run (maximum throughput).
    pub max: LoadResult,
    /// (offered fraction, offered rate, result) per open-loop run.
    pub open: Vec<(f64, f64, LoadResult)>,
}

/// Runs P3's HTTP side and P4's load curve.
pub async fn http_runs(input: &[u8], effort: Effort) -> anyhow::Result<HttpRuns> {
    let dir = tempfile::tempdir()?;
    let (url, key, node) = start_node(None, cores(), dir.path()).await?;
    let target = resize_target(&url, &key, input)?;
    loadgen::closed_loop(&target, cores(), Duration::from_secs(2), 10_000, "warm-up", true).await;
    let max = loadgen::closed_loop(&target, 2 * cores(), effort.run, 1_000_000, "P3 max throughput", false).await;
    if max.ok == 0 {
        bail!("no HTTP resize succeeded");
    }
    let mut open = Vec::new();
    for &fraction in effort.load_fractions {
        let rate = max.throughput() * fraction;
        let label = format!("P4 {:.0}% load", fraction * 100.0);
        let result = loadgen::open_loop(&target, rate, effort.run, 256, &label, false).await;
        open.push((fraction, rate, result));
    }
    node.abort();
    Ok(HttpRuns { max, open })
}

/// Runs the future `work` makes on a runtime of its own on a thread of its own, so the
/// load generator's timing does not wait on the report's other tasks.
pub async fn on_own_thread<T: Send + 'static>(
    work: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(runtime.block_on(work()))
    })
    .await
    .context("the load generator's thread")?
}

/// The hostile fixture: its `echo` (the default act) is the no-op function
/// of the soak and tail scenarios.
pub const HOSTILE_FIXTURE: &str = "sluice_fixture_hostile";

/// The guest component `name` built into `target/guests` by the host's
/// build (the test run or any `cargo build` of the host).
pub fn guest(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = repo_root().join(format!("target/guests/wasm32-wasip2/release/{name}.wasm"));
    std::fs::read(&path).with_context(|| format!("cannot read {} (built with the host)", path.display()))
}
