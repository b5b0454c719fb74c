//! `sluice new` → the template's own test → `sluice build` → deploy →
//! invoke → logs, with the real toolchain, against a server on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::start_server;

/// Where the generated projects build, shared between runs so a rerun is
/// incremental.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/templates")
}

/// Runs `program` in `dir` with the shared target directory.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("the command starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_function_goes_from_new_to_deployed_invoked_and_logged() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("greeter");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let made = run(sluice, &["new", "greeter", "--lang", "rust", "--dir", dir.to_str().expect("utf-8")], root.path());
    assert!(made.status.success(), "{}", text(&made.stderr));

    let tested = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()), &["test", "--quiet"], &dir)
    })
    .await
    .expect("joined");
    assert!(tested.status.success(), "the template's own tests: {}", text(&tested.stderr));

    let built = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(sluice, &["build"], &dir)
    })
    .await
    .expect("joined");
    assert!(built.status.success(), "{}", text(&built.stderr));
    let component = text(&built.stdout).trim().to_owned();
    assert!(component.ends_with("wasm32-wasip2/release/greeter.wasm"), "{component}");

    let server = start_server().await;
    let key = server.tenant("acme").await;
    let deployed = server.cli(&key, &["deploy", "greeter", &component]).await;
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));

    let (input, output) = (root.path().join("in.bin"), root.path().join("out.txt"));
    std::fs::write(&input, b"12345").expect("input");
    let (input, output) = (input.to_str().expect("utf-8"), output.to_str().expect("utf-8"));
    let args = ["invoke", "greeter", "--input", input, "--output", output, "-p", "greeting=hi", "--logs"];
    let invoked = server.cli(&key, &args).await;
    assert!(invoked.status.success(), "{}", text(&invoked.stderr));
    assert_eq!(std::fs::read_to_string(output).expect("output"), "hi: 5 bytes of unknown type\n");
    assert!(text(&invoked.stderr).contains("greeter: answered 28 bytes"), "{}", text(&invoked.stderr));

    let refused = server.cli(&key, &["invoke", "greeter", "--input", input, "--output", output, "-p", "x=1"]).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("invalid_input") && stderr.contains("unknown parameter `x`"), "{stderr}");
}
