//! For each language: `sluice new` → the template's own test → `sluice build` → deploy →
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

/// Runs `program args` in `dir` off the async threads; fails the test with
/// its stderr when it fails.
async fn succeeds(program: impl AsRef<std::ffi::OsStr>, args: &[&str], dir: &Path, what: &str) -> Output {
    let (program, dir) = (program.as_ref().to_owned(), dir.to_owned());
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(program, &args, &dir)
    })
    .await
    .expect("joined");
    assert!(output.status.success(), "{what}: {}{}", text(&output.stdout), text(&output.stderr));
    output
}

/// `sluice new NAME --lang LANG` in a fresh directory; returns it (and the
/// temporary root that holds it).
async fn scaffold(name: &str, lang: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join(name);
    let args = ["new", name, "--lang", lang, "--dir", dir.to_str().expect("utf-8")];
    succeeds(env!("CARGO_BIN_EXE_sluice"), &args, root.path(), "sluice new").await;
    (root, dir)
}

/// `sluice build` in `dir`; returns the component's path it printed.
async fn build(dir: &Path) -> String {
    let built = succeeds(env!("CARGO_BIN_EXE_sluice"), &["build"], dir, "sluice build").await;
    text(&built.stdout).trim().to_owned()
}

/// Deploys `component` as `name` on a fresh server and checks what every
/// template does: greets with its parameter and logs a line, and refuses
/// an unknown parameter as invalid input.
async fn deploy_invoke_and_read_logs(name: &str, component: &str, scratch: &Path) {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let deployed = server.cli(&key, &["deploy", name, component]).await;
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));

    let (input, output) = (scratch.join("in.bin"), scratch.join("out.txt"));
    std::fs::write(&input, b"12345").expect("input");
    let (input, output) = (input.to_str().expect("utf-8"), output.to_str().expect("utf-8"));
    let args = ["invoke", name, "--input", input, "--output", output, "-p", "greeting=hi", "--logs"];
    let invoked = server.cli(&key, &args).await;
    assert!(invoked.status.success(), "{}", text(&invoked.stderr));
    assert_eq!(std::fs::read_to_string(output).expect("output"), "hi: 5 bytes of unknown type\n");
    let logged = format!("{name}: answered 28 bytes");
    assert!(text(&invoked.stderr).contains(&logged), "{}", text(&invoked.stderr));

    let refused = server.cli(&key, &["invoke", name, "--input", input, "--output", output, "-p", "x=1"]).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("invalid_input") && stderr.contains("unknown parameter `x`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_function_goes_from_new_to_deployed_invoked_and_logged() {
    let (root, dir) = scaffold("greeter", "rust").await;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    succeeds(cargo, &["test", "--quiet"], &dir, "the template's own tests").await;
    let component = build(&dir).await;
    assert!(component.ends_with("wasm32-wasip2/release/greeter.wasm"), "{component}");
    deploy_invoke_and_read_logs("greeter", &component, root.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_function_goes_from_new_to_deployed_invoked_and_logged() {
    let (root, dir) = scaffold("js-greeter", "javascript").await;
    succeeds("npm", &["test", "--silent"], &dir, "the template's own tests").await;
    let component = build(&dir).await;
    let expected = dir.join("js-greeter.wasm").canonicalize().expect("built");
    assert_eq!(component, expected.to_str().expect("utf-8"));
    deploy_invoke_and_read_logs("js-greeter", &component, root.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_function_goes_from_new_to_deployed_invoked_and_logged() {
    let (root, dir) = scaffold("py-greeter", "python").await;
    succeeds("python3", &["-m", "unittest", "discover", "-s", "tests"], &dir, "the template's own tests").await;
    let component = build(&dir).await;
    let expected = dir.join("py-greeter.wasm").canonicalize().expect("built");
    assert_eq!(component, expected.to_str().expect("utf-8"));
    deploy_invoke_and_read_logs("py-greeter", &component, root.path()).await;
}
