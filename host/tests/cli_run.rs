//! `sluice run` as a user runs it: the real binary, real files.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn sluice(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).env("SLUICE_CACHE_DIR", cache).output().expect("sluice runs")
}

/// The single JSON object `--json` prints.
fn report(output: &Output) -> Value {
    let stdout = String::from_utf8(output.stdout.clone()).expect("utf-8 stdout");
    let mut lines = stdout.lines();
    let value: Value = serde_json::from_str(lines.next().expect("one line")).expect("stdout is JSON");
    assert_eq!(lines.next(), None, "stdout must hold exactly one JSON object: {stdout}");
    value
}

fn photo_path(name: &str) -> String {
    common::testdata().join("photos").join(name).to_string_lossy().into_owned()
}

#[test]
fn a_builtin_resizes_a_photo_into_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("small.jpg");
    let output = sluice(
        &[
            "run",
            "resize",
            "--input",
            &photo_path("harvesters.jpeg"),
            "--output",
            out.to_str().expect("utf-8"),
            "--param",
            "width=300",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report = report(&output);
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["content_type"], "image/jpeg");
    let written = std::fs::read(&out).expect("output written");
    assert_eq!(report["usage"]["bytes_out"], written.len());
    assert_eq!(report["usage"]["bytes_in"], std::fs::metadata(photo_path("harvesters.jpeg")).expect("meta").len());
    for field in ["wall_us", "cpu_us", "peak_memory_bytes"] {
        assert!(report["usage"][field].as_u64().is_some_and(|v| v > 0), "{field}: {report}");
    }
    let image = image::load_from_memory(&written).expect("decodes");
    assert_eq!((image.width(), image.height()), (300, 221));
}

#[test]
fn without_output_the_body_goes_to_stdout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = sluice(&["run", "grayscale", "--input", &photo_path("bricks-gray.png")], dir.path());
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(image::guess_format(&output.stdout).expect("an image on stdout"), image::ImageFormat::Png);
}

#[test]
fn a_refused_input_exits_1_with_the_error_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("notes.txt");
    std::fs::write(&input, "not an image").expect("write");
    let output =
        sluice(&["run", "resize", "--input", input.to_str().expect("utf-8"), "-p", "width=10", "--json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let report = report(&output);
    assert_eq!(report["outcome"], "invalid_input");
    assert_eq!(report["message"], "unrecognised image format; send JPEG, PNG, GIF, WebP, BMP or TIFF");
    assert_eq!(report["usage"]["outcome"], "invalid_input");
}

#[test]
fn a_wasm_path_runs_and_limits_come_from_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hostile = Path::new(env!("SLUICE_GUEST_DIR")).join("sluice_fixture_hostile.wasm");
    let input = photo_path("jpg-size-1x1.jpg");
    let output = sluice(
        &[
            "run",
            hostile.to_str().expect("utf-8"),
            "--input",
            &input,
            "-p",
            "act=loop",
            "--timeout-ms",
            "200",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let timeout = report(&output);
    assert_eq!(timeout["outcome"], "timeout");
    assert_eq!(timeout["message"], "the function ran past its 200ms deadline and was stopped");

    let output = sluice(
        &[
            "run",
            hostile.to_str().expect("utf-8"),
            "--input",
            &input,
            "-p",
            "act=memory-bomb",
            "--memory-mb",
            "32",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(report(&output)["outcome"], "memory_limit");
}

#[test]
fn a_component_that_is_not_a_transform_is_refused_with_its_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = photo_path("jpg-size-1x1.jpg");
    let core_module = dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").expect("write");
    let wrong_world = Path::new(env!("SLUICE_GUEST_DIR")).join("sluice_fixture_wrong_world.wasm");
    let random = dir.path().join("random.wasm");
    std::fs::write(&random, (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<_>>())
        .expect("write");
    for (component, code, reason) in [
        (core_module.as_path(), "core_module", "core WebAssembly module, not a component"),
        (wrong_world.as_path(), "wrong_world", "does not implement the `transform` world"),
        (random.as_path(), "not_wasm", "not a WebAssembly binary"),
    ] {
        let output = sluice(&["run", component.to_str().expect("utf-8"), "--input", &input, "--json"], dir.path());
        assert_eq!(output.status.code(), Some(1), "{}", component.display());
        let report = report(&output);
        assert_eq!(report["outcome"], code);
        assert!(report["message"].as_str().expect("message").contains(reason), "{report}");
        assert_eq!(report["usage"], Value::Null);
    }
}

#[test]
fn fuel_is_reported_when_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = sluice(
        &["run", "resize", "--input", &photo_path("peacock.progressive.jpeg"), "-p", "width=10", "--fuel", "--json"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0));
    assert!(report(&output)["usage"]["fuel"].as_u64().is_some_and(|fuel| fuel > 1000));
}

#[test]
fn an_unknown_function_or_missing_input_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = sluice(&["run", "sharpen", "--input", &photo_path("kodim23.png")], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "sluice run: `sharpen` is neither a built-in function (resize, grayscale) nor a .wasm file"
    );
    let output = sluice(&["run", "resize", "--input", "/nonexistent/photo.jpg"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the input /nonexistent/photo.jpg"));
}
