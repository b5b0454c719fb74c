//! Builds the guest components in `functions/` for `wasm32-wasip2` so that a
//! plain `cargo build --release` yields a `sluice` binary with its built-in
//! functions embedded, and the tests find every fixture.
//!
//! The guests are a separate cargo workspace with their own target directory
//! (`target/guests`): they need a different target, profile and rustflags,
//! and building them from here keeps one command for everything.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ sits inside the repository").to_path_buf();
    let functions = root.join("functions");
    let guest_target_dir = root.join("target").join("guests");

    watch_guest_sources(&functions);
    embed_console(&manifest_dir.join("console"));
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    ensure_guest_target();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&functions)
        .args(["build", "--release", "--workspace", "--target", GUEST_TARGET, "--target-dir"])
        .arg(&guest_target_dir);
    // The outer build's flags and wrappers (clippy's driver, host rustflags,
    // its target dir) are not meant for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("failed to run cargo for the guest components");
    if !status.success() {
        panic!(
            "building the guest components in {} failed (see the errors above); \
             is the {GUEST_TARGET} target installed? `rustup target add {GUEST_TARGET}`",
            functions.display()
        );
    }

    let out = guest_target_dir.join(GUEST_TARGET).join("release");
    for name in [
        "sluice_resize_component",
        "sluice_bench_resize_stages",
        "sluice_meter",
        "sluice_example_grayscale",
        "sluice_fixture_hostile",
        "sluice_fixture_wrong_world",
        "sluice_fixture_unknown_import",
    ] {
        let path = out.join(format!("{name}.wasm"));
        assert!(path.is_file(), "the guest build did not produce {}", path.display());
    }
    assemble_wat_fixtures(&functions.join("fixtures").join("wat"), &out);
    println!("cargo:rustc-env=SLUICE_GUEST_DIR={}", out.display());
}

/// Asks cargo to rerun this script when a file the guest build reads
/// changes. File by file rather than the whole folder: the JavaScript and
/// Python examples beside the crates are built by their own toolchains
/// (into `node_modules/`, `dist/`, `*.wasm` in place), and watching them
/// would rebuild the host after every test run.
fn watch_guest_sources(dir: &Path) {
    let is_other_toolchain = ["package.json", "pyproject.toml"].iter().any(|manifest| dir.join(manifest).exists());
    if is_other_toolchain {
        return;
    }
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display())).path();
        if path.is_dir() {
            watch_guest_sources(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Lists the console's files (`host/console/`) for `server::console` to
/// embed, so the folder is the one list of what the console serves and a
/// new file needs no change in Rust.
fn embed_console(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display())).path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut table = String::from("&[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().and_then(|n| n.to_str()).expect("console file names are UTF-8");
        table.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    table.push_str("]\n");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("console_files.rs");
    std::fs::write(&out, table).unwrap_or_else(|err| panic!("cannot write {}: {err}", out.display()));
}

/// Assembles each component-text fixture (`functions/fixtures/wat/NAME.wat`)
/// into `NAME.wasm` beside the guests, so tests find every fixture in one
/// place and the text is the only source. Attacks such as many core
/// instances each with its own memory are shapes no guest toolchain emits
/// on request.
fn assemble_wat_fixtures(dir: &Path, out: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    for entry in entries {
        let path = entry.expect("readable directory entry").path();
        if path.extension().is_some_and(|ext| ext == "wat") {
            let binary =
                wat::parse_file(&path).unwrap_or_else(|err| panic!("cannot assemble {}: {err}", path.display()));
            let target = out.join(path.with_extension("wasm").file_name().expect("a file name"));
            std::fs::write(&target, binary).unwrap_or_else(|err| panic!("cannot write {}: {err}", target.display()));
        }
    }
}

/// Installs the guest target through rustup when it is missing, so the
/// README's run command works on a machine that has only run `rustup`.
fn ensure_guest_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed =
        sysroot.as_deref().map(|s| s.join("lib/rustlib").join(GUEST_TARGET)).is_some_and(|p| Path::new(&p).is_dir());
    if installed {
        return;
    }
    println!("cargo:warning=installing the {GUEST_TARGET} target with rustup");
    let added = Command::new("rustup").args(["target", "add", GUEST_TARGET]).status().is_ok_and(|s| s.success());
    if !added {
        println!("cargo:warning=could not install {GUEST_TARGET}; run `rustup target add {GUEST_TARGET}`");
    }
}
