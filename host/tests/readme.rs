//! The README's walkthrough, run verbatim against a real server: if a
//! newcomer's copy-paste would fail, this test fails.

mod common;

use std::path::Path;
use std::process::Command;

/// The first ```sh block after the walkthrough marker.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let after_marker = readme.split("<!-- walkthrough:").nth(1).expect("the README has a walkthrough marker");
    let block = after_marker.split("```sh\n").nth(1).expect("a sh block follows the marker");
    block.split("\n```").next().expect("the block ends").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_verbatim() {
    let server = common::start_server().await;
    // The walkthrough runs at the repository root and reads testdata/; give
    // it the same layout in a scratch directory so its outputs land there.
    let scratch = tempfile::tempdir().expect("temp dir");
    let root = scratch.path().join("main");
    std::fs::create_dir(&root).expect("mkdir");
    let repo_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::os::unix::fs::symlink(&repo_target, root.join("target")).expect("link target/");
    std::os::unix::fs::symlink(common::testdata(), root.join("testdata")).expect("link testdata/");

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sluice")).parent().expect("bin dir").to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let script = walkthrough();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(&root)
            .env("PATH", path)
            .env("SLUICE_URL", &server.url)
            .env("SLUICE_ADMIN_TOKEN", &server.admin)
            .env_remove("SLUICE_API_KEY")
            .output()
            .expect("bash runs")
    })
    .await
    .expect("the walkthrough finished");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the walkthrough failed\nstdout:\n{stdout}\nstderr:\n{stderr}");

    let root = scratch.path().join("main");
    let open = |name: &str| image::open(root.join(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
    assert_eq!(open("small.jpeg").width(), 400);
    assert_eq!(open("small.webp").width(), 400);
    assert_eq!((open("square.png").width(), open("square.png").height()), (200, 200));
    assert_eq!(open("grey.png").color(), image::ColorType::L8);
    assert!(stdout.contains("\"status\": \"succeeded\""), "{stdout}");
    assert!(stdout.contains("\"function\": \"grey\""), "usage lists the tenant's function:\n{stdout}");
}
