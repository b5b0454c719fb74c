//! `sluice new` scaffolds a function project from the templates kept in the
//! repository's `templates/` (embedded in the binary, so an installed
//! `sluice` needs no checkout), with the contract from `wit/`; `sluice
//! build` runs the one build command of the project's language.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// The languages a project can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen, built by cargo for `wasm32-wasip2`.
    Rust,
    /// JavaScript, built by componentize-js (from npm).
    Javascript,
    /// Python, built by componentize-py (from PyPI).
    Python,
}

/// Arguments of `sluice new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The function's name (lowercase letters, digits, `-` and `_`,
    /// starting with a letter): the project's and, by default, its directory's.
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// Where to create the project (default: a new directory named NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Arguments of `sluice build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project's directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// The contract every template carries, from the one source in `wit/`.
const TRANSFORM_WIT: &str = include_str!("../../../wit/transform.wit");

/// One file of a template: its path in the project and its text, with
/// `{{name}}` and `{{crate_name}}` still to fill in.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

const RUST: &[TemplateFile] = &[
    TemplateFile { path: "Cargo.toml", text: include_str!("../../../templates/rust/Cargo.toml") },
    TemplateFile { path: "src/lib.rs", text: include_str!("../../../templates/rust/src/lib.rs") },
    TemplateFile { path: "README.md", text: include_str!("../../../templates/rust/README.md") },
    TemplateFile { path: ".gitignore", text: include_str!("../../../templates/rust/gitignore") },
    TemplateFile { path: "wit/transform.wit", text: TRANSFORM_WIT },
];

const JAVASCRIPT: &[TemplateFile] = &[
    TemplateFile { path: "package.json", text: include_str!("../../../templates/javascript/package.json") },
    TemplateFile { path: "src/component.js", text: include_str!("../../../templates/javascript/src/component.js") },
    TemplateFile { path: "src/function.js", text: include_str!("../../../templates/javascript/src/function.js") },
    TemplateFile {
        path: "test/function.test.js",
        text: include_str!("../../../templates/javascript/test/function.test.js"),
    },
    TemplateFile { path: "README.md", text: include_str!("../../../templates/javascript/README.md") },
    TemplateFile { path: ".gitignore", text: include_str!("../../../templates/javascript/gitignore") },
    TemplateFile { path: "wit/transform.wit", text: TRANSFORM_WIT },
];

const PYTHON: &[TemplateFile] = &[
    TemplateFile { path: "pyproject.toml", text: include_str!("../../../templates/python/pyproject.toml") },
    TemplateFile { path: "src/app.py", text: include_str!("../../../templates/python/src/app.py") },
    TemplateFile { path: "src/greeting.py", text: include_str!("../../../templates/python/src/greeting.py") },
    TemplateFile {
        path: "tests/test_greeting.py",
        text: include_str!("../../../templates/python/tests/test_greeting.py"),
    },
    TemplateFile { path: "README.md", text: include_str!("../../../templates/python/README.md") },
    TemplateFile { path: ".gitignore", text: include_str!("../../../templates/python/gitignore") },
    TemplateFile { path: "wit/transform.wit", text: TRANSFORM_WIT },
];

impl Lang {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Self::Rust => RUST,
            Self::Javascript => JAVASCRIPT,
            Self::Python => PYTHON,
        }
    }
}

/// True for a name that is a valid function name and project name in
/// every template's language.
fn valid_project_name(name: &str) -> bool {
    crate::platform::valid_name(name) && name.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Writes the project for `args`; returns its directory.
pub fn scaffold(args: &NewArgs) -> anyhow::Result<PathBuf> {
    if !valid_project_name(&args.name) {
        bail!(
            "`{}` cannot name a function: use 1 to 64 lowercase letters, digits, `-` and `_`, starting with a letter",
            args.name
        );
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut entries| entries.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty", dir.display());
    }
    let crate_name = args.name.replace('-', "_");
    for file in args.lang.files() {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = file.text.replace("{{name}}", &args.name).replace("{{crate_name}}", &crate_name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// Builds the project in `dir` with its language's command; returns the
/// component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("Cargo.toml").is_file() {
        build_rust(dir)
    } else if dir.join("package.json").is_file() {
        build_javascript(dir)
    } else if dir.join("pyproject.toml").is_file() {
        build_python(dir)
    } else {
        bail!("{} holds no project `sluice new` made: no Cargo.toml, package.json or pyproject.toml", dir.display())
    }
}

/// Runs `program args` in `dir`, failing with what it was when it fails.
fn run_in(dir: &Path, program: impl AsRef<std::ffi::OsStr>, args: &[&str], what: &str) -> anyhow::Result<()> {
    // Their progress goes to stderr: stdout carries only the component's path.
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run {what} (is it installed?)"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = package_name(&dir.join("Cargo.toml"), "[package]")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_in(dir, cargo, &["build", "--release", "--target", "wasm32-wasip2"], "cargo build")?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    built(target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_"))))
}

fn build_javascript(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let package: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", manifest.display()))?;
    let name = package["name"]
        .as_str()
        .filter(|name| valid_project_name(name))
        .with_context(|| format!("{} names no package `sluice new` could have made", manifest.display()))?;
    if !dir.join("node_modules").is_dir() {
        run_in(dir, "npm", &["install", "--no-audit", "--no-fund"], "npm install")?;
    }
    run_in(dir, "npm", &["run", "build", "--silent"], "npm run build")?;
    built(dir.join(format!("{name}.wasm")))
}

fn build_python(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = package_name(&dir.join("pyproject.toml"), "[project]")?;
    let out = format!("{name}.wasm");
    let args = ["-d", "wit", "-w", "transform", "componentize", "-p", "src", "app", "-o", &out];
    run_in(dir, "componentize-py", &args, "componentize-py")?;
    built(dir.join(out))
}

/// `component`, once the build said it succeeded and the file is there.
fn built(component: PathBuf) -> anyhow::Result<PathBuf> {
    if !component.is_file() {
        bail!("the build finished but {} is missing", component.display());
    }
    component.canonicalize().with_context(|| format!("cannot resolve {}", component.display()))
}

/// The `name` in the `section` (`[package]`, `[project]`) of the TOML
/// `manifest`, checked as a project name.
fn package_name(manifest: &Path, section: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    text.lines()
        .skip_while(|line| line.trim() != section)
        .find_map(|line| line.trim().strip_prefix("name").map(str::trim).and_then(|rest| rest.strip_prefix('=')))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .filter(|name| valid_project_name(name))
        .with_context(|| format!("{} names no package", manifest.display()))
}

/// Runs `sluice new`.
pub fn execute_new(args: NewArgs) -> ExitCode {
    match scaffold(&args) {
        Ok(dir) => {
            println!("created {} ({:?}); next: cd {} && sluice build", dir.display(), args.lang, dir.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs `sluice build`: prints the component's path on stdout.
pub fn execute_build(args: BuildArgs) -> ExitCode {
    match build(&args.dir) {
        Ok(component) => {
            println!("{}", component.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_project_gets_every_file_with_its_name_filled_in() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("p");
        let args = NewArgs { name: "my-fn".to_owned(), lang: Lang::Rust, dir: Some(dir.clone()) };
        assert_eq!(scaffold(&args).expect("scaffolded"), dir);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("name = \"my-fn\""), "{manifest}");
        assert_eq!(package_name(&dir.join("Cargo.toml"), "[package]").expect("named"), "my-fn");
        let readme = std::fs::read_to_string(dir.join("README.md")).expect("readme");
        assert!(readme.contains("release/my_fn.wasm") && !readme.contains("{{"), "{readme}");
        assert_eq!(std::fs::read_to_string(dir.join("wit/transform.wit")).expect("wit"), TRANSFORM_WIT);
        assert!(dir.join(".gitignore").is_file());
    }

    #[test]
    fn a_javascript_project_builds_its_component_under_its_name() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("p");
        let args = NewArgs { name: "my-fn".to_owned(), lang: Lang::Javascript, dir: Some(dir.clone()) };
        scaffold(&args).expect("scaffolded");
        let package: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).expect("package")).expect("json");
        assert_eq!(package["name"], "my-fn");
        assert!(package["scripts"]["build"].as_str().is_some_and(|build| build.ends_with("--out my-fn.wasm")));
        for file in ["src/component.js", "src/function.js", "test/function.test.js", "wit/transform.wit"] {
            assert!(dir.join(file).is_file(), "{file}");
        }
    }

    #[test]
    fn a_python_project_names_itself_in_pyproject() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("p");
        let args = NewArgs { name: "my_fn".to_owned(), lang: Lang::Python, dir: Some(dir.clone()) };
        scaffold(&args).expect("scaffolded");
        assert_eq!(package_name(&dir.join("pyproject.toml"), "[project]").expect("named"), "my_fn");
        for file in ["src/app.py", "src/greeting.py", "tests/test_greeting.py", "wit/transform.wit"] {
            assert!(dir.join(file).is_file(), "{file}");
        }
    }

    #[test]
    fn a_bad_name_or_a_non_empty_directory_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        for name in ["Upper", "9lives", "a/b", ""] {
            let args = NewArgs { name: name.to_owned(), lang: Lang::Rust, dir: Some(root.path().join("x")) };
            assert!(scaffold(&args).is_err(), "{name}");
        }
        std::fs::write(root.path().join("taken"), b"").expect("file");
        let args = NewArgs { name: "ok".to_owned(), lang: Lang::Rust, dir: Some(root.path().to_owned()) };
        let err = scaffold(&args).expect_err("not empty");
        assert!(err.to_string().ends_with("already exists and is not empty"), "{err}");
    }
}
