//! Runtime limits and switches, with the platform's defaults.

use std::path::PathBuf;
use std::time::Duration;

/// One MiB, for readable limits.
pub const MIB: usize = 1024 * 1024;

/// How the runtime is set up and what each call may consume.
///
/// | limit | default | why |
/// |---|---|---|
/// | `memory_limit` | 256 MiB | a 50 MP photo plus working buffers fits; a bomb does not |
/// | `timeout` | 10 s | a 24 MP resize takes ~1 s; anything ten times slower is stuck |
/// | `max_output` | 32 MiB | larger than any sane thumbnail, small enough to buffer |
/// | `max_log` | 64 KiB per stream | enough to debug, too little to flood the host |
/// | `max_instances` | 128 | pool slots: the most calls that can run at once |
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Linear memory a call may grow to; also the size of each pool slot.
    pub memory_limit: usize,
    /// Wall-clock deadline for a call, including time blocked in host calls.
    pub timeout: Duration,
    /// Largest output body a call may return.
    pub max_output: usize,
    /// Bytes of stdout and of stderr kept per call; the rest is counted and dropped.
    pub max_log: usize,
    /// Count fuel (instructions, roughly) per call. Off by default: it costs
    /// CPU on every call and the epoch deadline already stops runaway loops.
    pub fuel: bool,
    /// Reuse pre-allocated instance slots (fast) instead of mapping memory per call.
    pub pooling: bool,
    /// Pool slots, i.e. calls that may run at once.
    pub max_instances: u32,
    /// Linear memory kept mapped in a freed slot, so the next call on the
    /// slot starts warm instead of page-faulting in fresh zero pages.
    pub keep_resident: usize,
    /// How often the epoch ticks; a CPU-bound guest yields and checks its
    /// deadline at this granularity.
    pub epoch_tick: Duration,
    /// Where compiled artifacts are kept between runs; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

impl RuntimeConfig {
    /// The deadline in whole milliseconds, as the command line takes it.
    pub fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            memory_limit: 256 * MIB,
            timeout: Duration::from_secs(10),
            max_output: 32 * MIB,
            max_log: 64 * 1024,
            fuel: false,
            pooling: true,
            max_instances: 128,
            keep_resident: 4 * MIB,
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
        }
    }
}

/// Per-call limits; defaults come from [`RuntimeConfig`], and a call may
/// tighten them (never loosen memory past the pool slot size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Linear memory the call may grow to.
    pub memory: usize,
    /// Wall-clock deadline.
    pub timeout: Duration,
    /// Largest output body.
    pub max_output: usize,
}

impl From<&RuntimeConfig> for CallLimits {
    fn from(config: &RuntimeConfig) -> Self {
        Self { memory: config.memory_limit, timeout: config.timeout, max_output: config.max_output }
    }
}
