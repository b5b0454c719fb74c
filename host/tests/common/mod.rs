//! Helpers shared by the integration tests: the real guest components the
//! build script produced, the shared photos, and a runtime per test binary.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sluice::runtime::{Function, Invocation, Request, Runtime, RuntimeConfig};

/// A guest component from `target/guests`, e.g. `sluice_fixture_hostile`.
pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("SLUICE_GUEST_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// `shared/testdata`, beside the repository (override with SLUICE_TESTDATA).
pub fn testdata() -> PathBuf {
    let dir = std::env::var_os("SLUICE_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"));
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
    RESIZE.get_or_init(|| runtime().load(&guest("sluice_resize")).expect("resize loads")).clone()
}

/// The hostile fixture, compiled once per test binary.
pub fn hostile() -> Function {
    static HOSTILE: OnceLock<Function> = OnceLock::new();
    HOSTILE.get_or_init(|| runtime().load(&guest("sluice_fixture_hostile")).expect("hostile loads")).clone()
}

/// A request with the given body and `key=value` params.
pub fn request(body: Vec<u8>, params: &[(&str, &str)]) -> Request {
    Request {
        body,
        content_type: String::new(),
        params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

/// Calls `function` on the shared runtime with default limits.
pub async fn call(function: &Function, body: Vec<u8>, params: &[(&str, &str)]) -> Invocation {
    runtime().invoke(function, request(body, params)).await
}
