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

impl Lang {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Self::Rust => RUST,
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
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{} holds no project `sluice new` made: no Cargo.toml", dir.display());
    }
    let name = package_name(&manifest)?;
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .status()
        .context("cannot run cargo (is Rust installed?)")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let component = target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    if !component.is_file() {
        bail!("cargo finished but {} is missing", component.display());
    }
    Ok(component)
}

/// The `name` of the `[package]` in `manifest`.
fn package_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    text.lines()
        .skip_while(|line| line.trim() != "[package]")
        .find_map(|line| line.trim().strip_prefix("name").map(str::trim).and_then(|rest| rest.strip_prefix('=')))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .filter(|name| !name.is_empty())
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
        assert_eq!(package_name(&dir.join("Cargo.toml")).expect("named"), "my-fn");
        let readme = std::fs::read_to_string(dir.join("README.md")).expect("readme");
        assert!(readme.contains("release/my_fn.wasm") && !readme.contains("{{"), "{readme}");
        assert_eq!(std::fs::read_to_string(dir.join("wit/transform.wit")).expect("wit"), TRANSFORM_WIT);
        assert!(dir.join(".gitignore").is_file());
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
