//! What the runtime accepts as a function: only components implementing
//! `transform`, each refused with a precise code and a reason.

mod common;

use common::guest;
use sluice::runtime::{LoadError, Runtime, RuntimeConfig};

fn load_error(bytes: &[u8]) -> LoadError {
    common::runtime().load(bytes).expect_err("must be refused")
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    // The smallest valid core module: magic and version 1.
    let err = load_error(b"\0asm\x01\0\0\0");
    assert!(matches!(err, LoadError::CoreModule));
    assert_eq!(err.code(), sluice_core::ErrorCode::CoreModule);
    assert!(err.to_string().contains("core WebAssembly module, not a component"), "{err}");
}

#[test]
fn random_bytes_and_empty_bodies_are_not_wasm() {
    assert_eq!(load_error(b"").to_string(), "not a WebAssembly binary: 0 bytes is too short to be a component");
    assert_eq!(
        load_error(&common::photo("kodim23.png")).to_string(),
        "not a WebAssembly binary: it does not start with the `\\0asm` magic number"
    );
}

#[test]
fn a_truncated_component_does_not_compile() {
    let bytes = guest("sluice_fixture_hostile");
    let err = load_error(&bytes[..bytes.len() / 2]);
    assert!(matches!(err, LoadError::Compile(_)), "{err:?}");
}

#[test]
fn a_component_of_another_world_is_refused_with_the_reason() {
    let err = load_error(&guest("sluice_fixture_wrong_world"));
    match &err {
        LoadError::WrongWorld { world, reason } => {
            assert_eq!(*world, "transform");
            assert!(reason.contains("handle"), "{reason}");
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
    assert!(err.to_string().starts_with("the component does not implement the `transform` world: "), "{err}");
}

#[test]
fn a_component_importing_something_unknown_is_refused_with_the_import() {
    let err = load_error(&guest("sluice_fixture_unknown_import"));
    assert!(matches!(err, LoadError::Imports(_)), "{err:?}");
    assert!(err.to_string().contains("fixture:secrets/vault"), "{err}");
}

#[test]
fn the_meter_is_not_a_transform() {
    let err = load_error(&guest("sluice_meter"));
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err:?}");
}

#[test]
fn versions_are_content_addressed() {
    let bytes = guest("sluice_example_grayscale");
    let function = common::runtime().load(&bytes).expect("loads");
    use sha2::Digest;
    assert_eq!(function.version(), format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))));
    assert_eq!(function.size(), bytes.len());
}

#[test]
fn compiled_artifacts_are_cached_and_corrupt_ones_discarded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        || RuntimeConfig { cache_dir: Some(dir.path().to_path_buf()), pooling: false, ..RuntimeConfig::default() };
    let bytes = guest("sluice_fixture_hostile");

    Runtime::new(config()).expect("runtime").load(&bytes).expect("compiles");
    let mut files: Vec<_> =
        std::fs::read_dir(dir.path()).expect("cache dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    // One artifact, and the key that authenticates every artifact in the directory.
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[1].file_name().and_then(|n| n.to_str()), Some("hmac.key"), "{files:?}");
    let artifact = &files[0];
    assert!(artifact.extension().is_some_and(|e| e == "cwasm"), "{files:?}");

    // A second runtime loads from the cache.
    let cached = std::fs::read(artifact).expect("artifact");
    Runtime::new(config()).expect("runtime").load(&bytes).expect("loads from cache");
    assert_eq!(std::fs::read(artifact).expect("artifact"), cached, "a valid artifact is reused as is");

    // A tampered artifact is never deserialized: it is replaced by a fresh compile.
    let mut tampered = cached.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    std::fs::write(artifact, &tampered).expect("tamper");
    Runtime::new(config()).expect("runtime").load(&bytes).expect("recompiles");
    assert_eq!(std::fs::read(artifact).expect("artifact"), cached, "the tampered artifact was replaced");
}
