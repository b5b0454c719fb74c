//! What can go wrong when setting up, loading or calling a function. Each
//! error has one stable `code` callers can match on.

use std::time::Duration;

use sluice_core::ErrorCode;
use sluice_scheduler::JobError;

/// The runtime itself could not be set up (bad configuration, unusable cache).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Wasmtime rejected the engine configuration.
    #[error("cannot configure the wasmtime engine: {0}")]
    Engine(String),
    /// WASI could not be linked.
    #[error("cannot link WASI into the runtime: {0}")]
    Linker(String),
    /// The compiled-artifact cache directory is unusable.
    #[error("compiled-artifact cache at {path}: {source}")]
    Cache {
        /// The cache directory.
        path: std::path::PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
}

/// A component was refused before it could ever run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    /// A core module where a component is needed.
    #[error(
        "this is a core WebAssembly module, not a component; build for wasm32-wasip2 \
         (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Invalid or uncompilable component.
    #[error("the component does not validate or compile: {0}")]
    Compile(String),
    /// Imports something the sandbox does not provide (only WASI 0.2 is linked).
    #[error("the component imports something Sluice does not provide (only WASI 0.2 is available): {0}")]
    Imports(String),
    /// The component would create more core instances, memories or tables
    /// per instantiation than the runtime allows.
    #[error(
        "the component creates {count} {what} when instantiated; at most {cap} are allowed \
         (a component built by a standard toolchain needs far fewer)"
    )]
    TooComplex {
        /// What was counted: `core instances`, `memories` or `tables`.
        what: &'static str,
        /// How many the component creates.
        count: u64,
        /// The runtime's cap.
        cap: u32,
    },
    /// Valid component, wrong world.
    #[error("the component does not implement the `{world}` world: {reason}")]
    WrongWorld {
        /// The world that was expected.
        world: &'static str,
        /// Why the exports do not match.
        reason: String,
    },
}

impl LoadError {
    /// The stable error code callers match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotWasm(_) => ErrorCode::NotWasm,
            Self::CoreModule => ErrorCode::CoreModule,
            Self::Compile(_) => ErrorCode::CompileFailed,
            Self::Imports(_) => ErrorCode::UnsupportedImports,
            Self::WrongWorld { .. } => ErrorCode::WrongWorld,
            Self::TooComplex { .. } => ErrorCode::ComponentTooComplex,
        }
    }
}

/// Why one call did not produce an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function refused the caller's input (`invalid-input`).
    #[error("{0}")]
    InvalidInput(String),
    /// The function reported an internal failure (`internal`).
    #[error("{0}")]
    FunctionError(String),
    /// The guest trapped: panic, stack overflow, exit, bad memory access….
    #[error("{0}")]
    Trapped(String),
    /// The call ran past its deadline and was stopped.
    #[error("the function ran past its {}ms deadline and was stopped", limit.as_millis())]
    Timeout {
        /// The deadline that was exceeded.
        limit: Duration,
    },
    /// The guest tried to grow its memories and tables past the limit (their
    /// sum) and then failed.
    #[error(
        "the function tried to use {requested} bytes of memory (all its memories and tables); the limit is {limit} bytes"
    )]
    MemoryLimit {
        /// The limit in bytes.
        limit: usize,
        /// The size the guest asked to grow to.
        requested: usize,
    },
    /// The output exceeded the output cap.
    #[error("the function returned {size} bytes; the output limit is {limit} bytes")]
    OutputTooLarge {
        /// Output size in bytes.
        size: usize,
        /// The cap in bytes.
        limit: usize,
    },
    /// Every instance slot is busy; try again shortly.
    #[error("all {0} sandbox slots are busy")]
    Overloaded(u32),
}

impl InvokeError {
    /// The stable error code callers match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidInput(_) => ErrorCode::InvalidInput,
            Self::FunctionError(_) => ErrorCode::FunctionError,
            Self::Trapped(_) => ErrorCode::FunctionTrapped,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::MemoryLimit { .. } => ErrorCode::MemoryLimit,
            Self::OutputTooLarge { .. } => ErrorCode::OutputTooLarge,
            Self::Overloaded(_) => ErrorCode::Overloaded,
        }
    }

    /// The failure as a job records it.
    pub fn to_job_error(&self) -> JobError {
        JobError { code: self.code(), message: self.to_string() }
    }
}
