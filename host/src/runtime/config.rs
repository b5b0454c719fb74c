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
/// | `max_core_instances_per_component` | 128 | componentize-py needs ~64, componentize-js ~26, Rust ~27: twice the largest |
/// | `max_memories_per_component` | 4 | every toolchain emits 1; each more is a pool slot and address space |
/// | `max_tables_per_component` | 8 | every toolchain emits 2 (the program's and the shims'), so four times that |
/// | `max_resources` | 4096 | host-side WASI handles (streams, pollables) a call may hold at once; a transform needs a handful |
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Memory a call may hold: the sum over all of its linear memories and
    /// tables. Also the size of each pool slot.
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
    /// Core module instances one component may create. Checked at deploy
    /// and again by the store at instantiation.
    pub max_core_instances_per_component: u32,
    /// Linear memories one component may define: each is a pool slot and
    /// its address-space reservation, whatever its size.
    pub max_memories_per_component: u32,
    /// Tables one component may define.
    pub max_tables_per_component: u32,
    /// Entries a call's WASI resource table may hold. The entries live on
    /// the host, outside the guest's memory and its limit, so they have a
    /// cap of their own.
    pub max_resources: usize,
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
            max_core_instances_per_component: 128,
            max_memories_per_component: 4,
            max_tables_per_component: 8,
            max_resources: 4096,
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
    /// Memory the call may hold, summed over its linear memories and tables.
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
