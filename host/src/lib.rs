//! Sluice: a serverless WebAssembly function platform.
//!
//! This crate is the `sluice` binary's library: everything but argument
//! parsing lives here so it can be tested.
//!
//! - [`runtime`]: the wasmtime sandbox — validation, compilation and its
//!   on-disk cache, per-call limits, metering.
//! - [`builtins`]: the functions compiled into the binary (`resize`,
//!   `grayscale`, `meter`).
//! - [`meter`]: host side of the usage aggregator.
//! - [`cli`]: the command-line interface and its commands.

pub mod builtins;
pub mod cli;
pub mod meter;
pub mod runtime;
pub mod store;
