//! P7: Sluice's no-op sync call beside `wasmtime serve` answering a
//! `wasi:http` hello world, both a fresh instance per request on the same
//! runtime version, driven by the same closed-loop clients in the same
//! minutes, at two concurrencies.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;

use super::node::Node;
use super::scenarios::{Effort, HOSTILE_FIXTURE, guest, on_own_thread};
use crate::loadgen::{self, LoadResult, Target};

/// The `wasmtime-cli` release compared with: the one whose runtime Sluice embeds.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Concurrent clients of each pair of runs.
pub const CONCURRENCIES: [usize; 2] = [2, 16];

/// The `wasi:http` hello component `wasmtime serve` runs.
const HELLO: &str = "sluice_bench_hello_http";

/// One concurrency, both sides.
#[derive(Debug, Clone)]
pub struct PeerPair {
    /// Closed-loop clients.
    pub clients: usize,
    /// Sluice's no-op call.
    pub sluice: LoadResult,
    /// `wasmtime serve`'s hello.
    pub wasmtime: LoadResult,
}

/// The comparison, or why it was not run.
#[derive(Debug, Clone)]
pub enum PeerRuns {
    /// Both sides were measured.
    Measured(Vec<PeerPair>),
    /// Not measured, and why.
    Skipped(String),
}

impl PeerRuns {
    /// P7: Sluice p99 / `wasmtime serve` p99 at 16 clients.
    pub fn p99_ratio(&self) -> f64 {
        let Self::Measured(pairs) = self else { return f64::NAN };
        pairs
            .iter()
            .find(|pair| pair.clients == 16)
            .map_or(f64::NAN, |pair| pair.sluice.latency_ms(0.99) / pair.wasmtime.latency_ms(0.99))
    }
}

/// `wasmtime` of [`WASMTIME_VERSION`] on `PATH` or in cargo's bin directory.
fn installed_wasmtime() -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin/wasmtime"));
    let candidates = [Some(PathBuf::from("wasmtime")), cargo_bin];
    candidates.into_iter().flatten().find(|candidate| {
        std::process::Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(WASMTIME_VERSION))
    })
}

/// Installs `wasmtime-cli` of [`WASMTIME_VERSION`] with cargo (about a
/// quarter of an hour on two cores, once).
fn install_wasmtime() -> anyhow::Result<PathBuf> {
    eprintln!("P7: installing wasmtime-cli {WASMTIME_VERSION} with cargo (once; about 15 minutes)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args(["install", "--locked", "wasmtime-cli", "--version", WASMTIME_VERSION])
        .status()
        .context("run cargo install")?;
    if !status.success() {
        bail!("cargo install wasmtime-cli {WASMTIME_VERSION} failed ({status})");
    }
    installed_wasmtime().context("wasmtime installed but not found")
}

/// A `wasmtime serve` child process, killed on drop.
struct WasmtimeServe(std::process::Child);

impl WasmtimeServe {
    /// Serves `component` on a free loopback port with the pooling
    /// allocator (as Sluice runs), waiting until it answers.
    async fn start(binary: &std::path::Path, component: &std::path::Path) -> anyhow::Result<(Self, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(binary)
            .args(["serve", "-S", "cli", "-O", "pooling-allocator=y", "--addr", &addr])
            .arg(component)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start wasmtime serve")?;
        let serve = Self(child);
        let url = format!("http://{addr}/");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(&url).send().await.is_ok_and(|response| response.status().is_success()) {
                return Ok((serve, url));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("wasmtime serve did not answer on {addr}")
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn closed(target: &Target, clients: usize, run: Duration, label: &'static str) -> anyhow::Result<LoadResult> {
    let target = target.clone();
    on_own_thread(move || {
        Box::pin(async move { loadgen::closed_loop(&target, clients, run, u64::MAX, label, true).await })
    })
    .await
}

/// Runs the comparison. Without `wasmtime` of the right version it is
/// installed when `install` (the full run) and skipped otherwise.
pub async fn peer_runs(effort: Effort, install: bool) -> anyhow::Result<PeerRuns> {
    let wasmtime = match installed_wasmtime() {
        Some(binary) => binary,
        None if install => tokio::task::spawn_blocking(install_wasmtime).await.context("install wasmtime")??,
        None => {
            return Ok(PeerRuns::Skipped(format!(
                "wasmtime-cli {WASMTIME_VERSION} is not installed (the full report installs it with `cargo install --locked`)"
            )));
        }
    };
    let hello = super::scenarios::repo_root().join(format!("target/guests/wasm32-wasip2/release/{HELLO}.wasm"));
    if !hello.exists() {
        bail!("{} is missing (built with the host)", hello.display());
    }
    let (serve, hello_url) = WasmtimeServe::start(&wasmtime, &hello).await?;
    let node = tokio::task::spawn_blocking(|| Node::start(&["--rate", "1000000", "--burst", "1000000"]))
        .await
        .context("start the node")??;
    let key = node.tenant("peer").await?;
    node.deploy(&key, "echo", &guest(HOSTILE_FIXTURE)?).await?;
    let sluice = Target::new(&format!("{}/v1/functions/echo/invoke", node.url), &key, Bytes::from_static(b"x"))?;
    let peer = Target::new(&hello_url, "unused", Bytes::from_static(b"x"))?;
    // Warm both (compiled code, pooled slots, connections) before timing.
    closed(&sluice, 16, Duration::from_secs(2), "warm-up").await?;
    closed(&peer, 16, Duration::from_secs(2), "warm-up").await?;
    let mut pairs = Vec::new();
    for clients in CONCURRENCIES {
        let sluice = closed(&sluice, clients, effort.run, "sluice").await?;
        let wasmtime = closed(&peer, clients, effort.run, "wasmtime serve").await?;
        pairs.push(PeerPair { clients, sluice, wasmtime });
    }
    drop(serve);
    Ok(PeerRuns::Measured(pairs))
}
