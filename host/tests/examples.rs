//! The per-language examples in `functions/examples/`, each built in place
//! by `sluice build` with its real toolchain (esbuild + componentize-js from
//! npm, componentize-py from PyPI), run through its own tests, deployed to
//! a server on 127.0.0.1 and called over HTTP: the answer, the log and the
//! `invalid-input` path.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::http::{deploy, error_of, invoke};
use common::{TestServer, photo, start_server};
use reqwest::StatusCode;

fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/examples").join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `program args` in `dir`, failing the test with its output when it fails.
fn succeeds(program: &str, args: &[&str], dir: &Path) -> Output {
    let output = Command::new(program).args(args).current_dir(dir).output().expect("the command starts");
    assert!(output.status.success(), "{program} {args:?}: {}{}", text(&output.stdout), text(&output.stderr));
    output
}

/// `sluice build` in the example's folder, once per test binary however
/// many tests ask (they run in parallel; the others wait).
async fn built(name: &'static str, once: &'static OnceLock<PathBuf>) -> PathBuf {
    tokio::task::spawn_blocking(move || {
        once.get_or_init(|| {
            let output = succeeds(env!("CARGO_BIN_EXE_sluice"), &["build"], &example_dir(name));
            PathBuf::from(text(&output.stdout).trim())
        })
        .clone()
    })
    .await
    .expect("joined")
}

static INVERT_JS: OnceLock<PathBuf> = OnceLock::new();
static IMAGE_INFO_PY: OnceLock<PathBuf> = OnceLock::new();

/// A server with tenant `acme` and `name` deployed from `component`.
async fn deployed(name: &str, component: &Path) -> (TestServer, String) {
    let server = start_server().await;
    let key = server.tenant("acme").await;
    let bytes = std::fs::read(component).expect("the built component");
    let response = deploy(&server, &key, name, bytes).await;
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.expect("body"));
    (server, key)
}

/// The job id a synchronous call answered with, for its logs.
fn job_id(response: &reqwest::Response) -> String {
    response.headers()["sluice-job-id"].to_str().expect("ascii").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_example_passes_its_own_tests() {
    let component = built("invert-js", &INVERT_JS).await;
    assert_eq!(component, example_dir("invert-js").join("invert-js.wasm").canonicalize().expect("built"));
    tokio::task::spawn_blocking(|| succeeds("npm", &["test", "--silent"], &example_dir("invert-js")))
        .await
        .expect("joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_example_inverts_a_png_and_logs_what_it_did() {
    let component = built("invert-js", &INVERT_JS).await;
    let (server, key) = deployed("invert", &component).await;
    let input = photo("bricks-dither.png");

    let response = invoke(&server, &key, "/v1/functions/invert/invoke", input.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    let id = job_id(&response);
    let output = response.bytes().await.expect("body");
    let (before, after) = (
        image::load_from_memory(&input).expect("input").to_rgba8(),
        image::load_from_memory(&output).expect("a PNG").to_rgba8(),
    );
    assert_eq!(before.dimensions(), after.dimensions());
    for (was, is) in before.pixels().zip(after.pixels()) {
        assert_eq!(is.0, [255 - was[0], 255 - was[1], 255 - was[2], was[3]]);
    }

    let logs = server.get_json(&format!("/v1/jobs/{id}/logs"), &key).await;
    let line = format!("invert-js: {} bytes in, {} bytes out\n", input.len(), output.len());
    assert_eq!(logs, serde_json::json!({ "stdout": "", "stderr": line, "truncated": false }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_example_refuses_a_jpeg_as_invalid_input() {
    let component = built("invert-js", &INVERT_JS).await;
    let (server, key) = deployed("invert", &component).await;
    let response = invoke(&server, &key, "/v1/functions/invert/invoke", photo("harvesters.jpeg")).await;
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"));
    assert_eq!(message, "the body is not a PNG image (this function takes PNG)");

    let response = invoke(&server, &key, "/v1/functions/invert/invoke?strength=200", photo("bricks-gray.png")).await;
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"));
    assert_eq!(message, "`strength` must be a number from 0 to 100, not `200`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_passes_its_own_tests() {
    let component = built("image-info-py", &IMAGE_INFO_PY).await;
    assert_eq!(component, example_dir("image-info-py").join("image-info-py.wasm").canonicalize().expect("built"));
    let args = ["-m", "unittest", "discover", "-s", "tests"];
    tokio::task::spawn_blocking(move || succeeds("python3", &args, &example_dir("image-info-py")))
        .await
        .expect("joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_answers_a_jpeg_header_as_json_with_the_fields_asked_for() {
    let component = built("image-info-py", &IMAGE_INFO_PY).await;
    let (server, key) = deployed("info", &component).await;

    let response = invoke(&server, &key, "/v1/functions/info/invoke", photo("Landscape_6.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let id = job_id(&response);
    let facts: serde_json::Value = response.json().await.expect("JSON");
    let expected = serde_json::json!({
        "format": "jpeg", "width": 1200, "height": 1800, "bit_depth": 8, "colour": "ycbcr",
        "channels": 3, "progressive": false, "exif_orientation": 6,
    });
    assert_eq!(facts, expected);
    let logs = server.get_json(&format!("/v1/jobs/{id}/logs"), &key).await;
    let line = format!("image-info-py: read {} bytes\n", photo("Landscape_6.jpg").len());
    assert_eq!(logs, serde_json::json!({ "stdout": "", "stderr": line, "truncated": false }));

    let path = "/v1/functions/info/invoke?fields=width,height,format";
    let response = invoke(&server, &key, path, photo("hibiscus.regular.lossy.webp")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "{\"width\": 312, \"height\": 442, \"format\": \"webp\"}\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_refuses_what_is_not_an_image_as_invalid_input() {
    let component = built("image-info-py", &IMAGE_INFO_PY).await;
    let (server, key) = deployed("info", &component).await;
    let response = invoke(&server, &key, "/v1/functions/info/invoke", b"plain text".to_vec()).await;
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"));
    assert_eq!(message, "not an image this function reads (PNG, JPEG, GIF, BMP, WebP or TIFF)");

    let response = invoke(&server, &key, "/v1/functions/info/invoke?fields=orientation", photo("kodim23.png")).await;
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"));
    let fields = "format, width, height, bit_depth, colour, channels, interlaced, animated";
    assert_eq!(message, format!("no field `orientation` for a png image; it has {fields}"));
}
