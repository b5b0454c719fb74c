//! Helpers shared by the integration tests: the real guest components the
//! build script produced, the shared photos, and a runtime per test binary.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod browser;
pub mod burst;
pub mod http;
pub mod processes;
pub mod stores;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sluice::runtime::{Function, Invocation, Runtime, RuntimeConfig};
use sluice_core::CallRequest;

/// A guest component from `target/guests`, e.g. `sluice_fixture_hostile`.
pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("SLUICE_GUEST_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// `testdata/` in the repository (override with SLUICE_TESTDATA).
pub fn testdata() -> PathBuf {
    let dir = std::env::var_os("SLUICE_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata"));
    assert!(dir.join("photos").is_dir(), "test photos not found at {} (set SLUICE_TESTDATA)", dir.display());
    dir
}

/// Every file in `testdata/<sub>`, sorted.
pub fn files_in(sub: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata().join(sub))
        .unwrap_or_else(|err| panic!("cannot list testdata/{sub}: {err}"))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "testdata/{sub} is empty");
    files
}

/// One photo's bytes.
pub fn photo(name: &str) -> Vec<u8> {
    let path = testdata().join("photos").join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The default-configured runtime shared by a test binary.
pub fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    Arc::clone(RUNTIME.get_or_init(|| Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime starts"))))
}

/// The built-in resize, compiled once per test binary.
pub fn resize() -> Function {
    static RESIZE: OnceLock<Function> = OnceLock::new();
    RESIZE.get_or_init(|| runtime().load(&guest("sluice_resize_component")).expect("resize loads")).clone()
}

/// The hostile fixture, compiled once per test binary.
pub fn hostile() -> Function {
    static HOSTILE: OnceLock<Function> = OnceLock::new();
    HOSTILE.get_or_init(|| runtime().load(&guest("sluice_fixture_hostile")).expect("hostile loads")).clone()
}

/// A request with the given body and `key=value` params.
pub fn request(body: Vec<u8>, params: &[(&str, &str)]) -> CallRequest {
    CallRequest {
        body,
        content_type: String::new(),
        params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

/// Calls `function` on the shared runtime with default limits.
pub async fn call(function: &Function, body: Vec<u8>, params: &[(&str, &str)]) -> Invocation {
    runtime().invoke(function, request(body, params)).await
}

/// A `sluice serve` node running in this process on 127.0.0.1:0.
pub struct TestServer {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The admin token.
    pub admin: String,
    /// The data directory (kept until the server is dropped).
    pub data_dir: PathBuf,
    /// `http://…/metrics` of the token-less metrics listener, if configured.
    pub metrics_url: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Stops the server the way SIGTERM does and waits for it to drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    /// A request builder for `path` with `key` as bearer token.
    pub fn request(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, format!("{}{path}", self.url)).bearer_auth(key)
    }

    /// GETs `path` with `key` and parses the JSON answer.
    pub async fn get_json(&self, path: &str, key: &str) -> serde_json::Value {
        let response = self.request(reqwest::Method::GET, path, key).send().await.expect("sent");
        response.json().await.expect("json")
    }

    /// Creates a tenant and returns its API key.
    pub async fn tenant(&self, name: &str) -> String {
        create_tenant(&self.url, &self.admin, name).await
    }

    /// Runs the `sluice` CLI against this server with `key` as
    /// `SLUICE_API_KEY` (admin commands take `--admin-token`).
    pub async fn cli(&self, key: &str, args: &[&str]) -> std::process::Output {
        let (url, key) = (self.url.clone(), key.to_owned());
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(&args)
                .env("SLUICE_URL", url)
                .env("SLUICE_API_KEY", key)
                .env_remove("SLUICE_ADMIN_TOKEN")
                .output()
                .expect("sluice runs")
        })
        .await
        .expect("joined")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Creates tenant `name` on the node at `url` with the admin token and
/// returns its API key.
pub async fn create_tenant(url: &str, admin: &str, name: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/tenants"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 201, "creating tenant {name}");
    let body: serde_json::Value = response.json().await.expect("json");
    body["api_key"].as_str().expect("api_key").to_owned()
}

/// Compiled artifacts shared by every test server, so each compiles the
/// built-ins once per test run rather than once per test.
pub fn shared_artifact_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
}

/// Test defaults: small, fast, deterministic.
pub fn serve_config(data_dir: &Path) -> sluice::server::ServeConfig {
    let mut platform = sluice::platform::PlatformConfig::new(data_dir.to_path_buf());
    platform.runtime.cache_dir = Some(shared_artifact_cache());
    platform.runtime.max_instances = 16;
    let mut config = sluice::server::ServeConfig::new(platform);
    config.workers = 2;
    config.admin_token = Some("test-admin-token".to_owned());
    config.drain_timeout = std::time::Duration::from_secs(10);
    config
}

/// Starts a server with [`serve_config`] adjusted by `adjust`.
pub async fn start_server_with(adjust: impl FnOnce(&mut sluice::server::ServeConfig)) -> TestServer {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut server = start_server_in(temp.path(), adjust).await;
    server._temp = Some(temp);
    server
}

/// Starts a server with the test defaults.
pub async fn start_server() -> TestServer {
    start_server_with(|_| {}).await
}

/// Starts a server on an existing data directory (for restart tests).
pub async fn start_server_in(data_dir: &Path, adjust: impl FnOnce(&mut sluice::server::ServeConfig)) -> TestServer {
    let mut config = serve_config(data_dir);
    adjust(&mut config);
    let admin = config.admin_token.clone().unwrap_or_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, started) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(sluice::server::run(
        listener,
        config,
        async move {
            let _ = stopped.await;
        },
        move |started| {
            let _ = ready.send(started.metrics_addr);
        },
    ));
    let metrics_url = started.await.expect("the server starts").map(|addr| format!("http://{addr}/metrics"));
    TestServer {
        url,
        admin,
        data_dir: data_dir.to_path_buf(),
        metrics_url,
        shutdown: Some(shutdown),
        task: Some(task),
        _temp: None,
    }
}
