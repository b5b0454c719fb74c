//! P9: libvips, the engine behind imgproxy, doing P1's job on the same
//! photos in the same minutes: thumbnail to 400 px wide and encode in the
//! source format, one thread, encoder settings matched to Sluice's (see
//! `bench/libvips.py`, which runs it through pyvips).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::scenarios::repo_root;

/// The pip packages that bring pyvips and a libvips build with it.
const PACKAGES: [&str; 2] = ["pyvips", "pyvips-binary"];

/// What libvips is asked to do: P1's resize, as far as libvips has the
/// same knobs.
#[derive(Debug, Clone, Copy)]
pub struct LibvipsJob {
    /// Output width in pixels (height follows the aspect ratio).
    pub width: u32,
    /// JPEG quality.
    pub quality: u8,
}

impl LibvipsJob {
    /// The job matching Sluice's resize `params`, or why there is none:
    /// libvips' thumbnail takes a width and its Lanczos3 kernel, and the
    /// column encodes in the source format.
    pub fn matching(params: &[(String, String)]) -> Result<Self, String> {
        let parsed = sluice_resize::ResizeParams::parse(params).map_err(|err| err.to_string())?;
        let only_known =
            params.iter().all(|(key, _)| matches!(key.as_str(), "width" | "quality" | "filter" | "format"));
        let matched = only_known
            && parsed.filter == sluice_resize::Filter::Lanczos3
            && parsed.format == sluice_resize::Format::Same;
        match parsed.width {
            Some(width) if matched => Ok(Self { width, quality: parsed.quality }),
            _ => Err("the libvips column runs only a width (with quality, Lanczos3, the source format)".to_owned()),
        }
    }
}

/// What libvips took for one photo, and how much it wrote.
#[derive(Debug, Clone, Copy)]
pub struct VipsTiming {
    /// Median ms.
    pub ms: f64,
    /// Bytes of the encoded output.
    pub bytes: u64,
}

/// libvips' time per photo, or why it was not measured.
#[derive(Debug, Clone)]
pub enum LibvipsRun {
    /// Measured: the version, and each photo's median ms or why libvips
    /// could not do it.
    Measured {
        /// e.g. `libvips 8.18.7 (pyvips 3.2.0)`.
        version: String,
        /// What it did.
        job: LibvipsJob,
        /// By photo file name.
        photos: BTreeMap<String, Result<VipsTiming, String>>,
    },
    /// Not measured, and why.
    Skipped(String),
}

impl LibvipsRun {
    /// The median ms for `photo`, when measured.
    pub fn ms(&self, photo: &str) -> Option<f64> {
        match self {
            Self::Measured { photos, .. } => photos.get(photo).and_then(|time| time.as_ref().ok().map(|t| t.ms)),
            Self::Skipped(_) => None,
        }
    }
}

fn script() -> PathBuf {
    repo_root().join("bench/libvips.py")
}

/// `python3 bench/libvips.py ARGS` with libvips held to one thread.
fn python(args: &[String]) -> std::process::Command {
    let mut command = std::process::Command::new("python3");
    command.arg(script()).args(args).env("VIPS_CONCURRENCY", "1");
    command
}

/// The libvips version pyvips loads, or `None` when it is missing.
fn installed_version() -> Option<String> {
    let out = python(&["--version".to_owned()]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Installs pyvips and its libvips build from PyPI.
fn install() -> anyhow::Result<String> {
    eprintln!("P9: installing {} with pip", PACKAGES.join(" "));
    let pip = |extra: &[&str]| {
        std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(extra)
            .args(PACKAGES)
            .status()
    };
    let installed =
        pip(&[]).context("run pip")?.success() || pip(&["--break-system-packages"]).context("run pip")?.success();
    if !installed {
        bail!("pip could not install {}", PACKAGES.join(" "));
    }
    installed_version().context("pyvips installed but libvips does not load")
}

/// Times libvips doing `job` on `photos`, `runs` times each. Without
/// pyvips it is installed when `install` (the full run) and skipped
/// otherwise.
pub async fn libvips_run(
    photos: Vec<PathBuf>,
    job: LibvipsJob,
    runs: usize,
    install_missing: bool,
) -> anyhow::Result<LibvipsRun> {
    let version = match installed_version() {
        Some(version) => version,
        None if install_missing => tokio::task::spawn_blocking(install).await.context("install pyvips")??,
        None => {
            return Ok(LibvipsRun::Skipped(format!(
                "pyvips is not installed (`pip install {}`; the full report installs it)",
                PACKAGES.join(" ")
            )));
        }
    };
    tokio::task::spawn_blocking(move || measure(version, &photos, job, runs)).await.context("libvips run")?
}

fn measure(version: String, photos: &[PathBuf], job: LibvipsJob, runs: usize) -> anyhow::Result<LibvipsRun> {
    let mut args = vec![job.width.to_string(), job.quality.to_string(), runs.max(1).to_string()];
    args.extend(photos.iter().map(|path| path.display().to_string()));
    let out = python(&args).output().context("run bench/libvips.py")?;
    if !out.status.success() {
        bail!("bench/libvips.py failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let mut times = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let row: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("libvips.py printed {line}"))?;
        let photo = row["photo"].as_str().context("a row without its photo")?.to_owned();
        let time = match (row["ms"].as_f64(), row["bytes"].as_u64(), row["error"].as_str()) {
            (Some(ms), Some(bytes), _) => Ok(VipsTiming { ms, bytes }),
            (_, _, Some(error)) => Err(error.to_owned()),
            _ => bail!("libvips.py printed neither a time nor an error: {line}"),
        };
        times.insert(photo, time);
    }
    Ok(LibvipsRun::Measured { version, job, photos: times })
}
