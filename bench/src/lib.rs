//! Sluice's benchmarks: shared pieces of the criterion benches (`benches/`:
//! where the photos are, a recorder that keeps per-iteration times so a
//! bench can print ratios when criterion is done), the HTTP load generator
//! ([`loadgen`]), tiny jobs through a queue ([`queue_load`]) and the
//! one-command report ([`report`]).

pub mod loadgen;
pub mod queue_load;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `testdata/photos` in the repository (override with SLUICE_TESTDATA).
pub fn photos_dir() -> PathBuf {
    std::env::var_os("SLUICE_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata"))
        .join("photos")
}

/// The files in `dir` (a folder of photos), sorted by name: what the
/// per-photo comparisons run over.
pub fn photo_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    photos.sort();
    Ok(photos)
}

/// One photo's bytes; panics with the path when it is missing.
pub fn photo(name: &str) -> Vec<u8> {
    let path = photos_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Per-iteration times (ns) of every sample criterion took, by label.
#[derive(Debug, Default)]
pub struct Recorder {
    samples: Mutex<BTreeMap<String, Vec<f64>>>,
}

impl Recorder {
    /// Runs `work` `iters` times, records the mean time per iteration under
    /// `label`, and returns the total for criterion's `iter_custom`.
    pub fn time(&self, label: &str, iters: u64, mut work: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            work();
        }
        let elapsed = start.elapsed();
        let per_iter = elapsed.as_nanos() as f64 / iters.max(1) as f64;
        let mut samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        samples.entry(label.to_owned()).or_default().push(per_iter);
        elapsed
    }

    /// Median per-iteration time in nanoseconds (`NaN` when nothing was recorded).
    pub fn median_ns(&self, label: &str) -> f64 {
        let samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(values) = samples.get(label) else { return f64::NAN };
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_recorded_samples() {
        let recorder = Recorder::default();
        assert!(recorder.median_ns("none").is_nan());
        for iters in [1, 2, 4] {
            recorder.time("x", iters, || {});
        }
        assert!(recorder.median_ns("x").is_finite());
    }
}
