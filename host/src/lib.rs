//! Sluice: a serverless WebAssembly function platform.
//!
//! This crate is the `sluice` binary's library: everything but argument
//! parsing lives here so it can be tested.
//!
//! - [`runtime`]: the wasmtime sandbox — validation, compilation and its
//!   on-disk cache, per-call limits, metering.
//! - [`http_message`]: how a call to a `wasi:http` component travels
//!   through the queue (`message/http`).
//! - [`builtins`]: the functions compiled into the binary (`resize`,
//!   `grayscale`, `meter`).
//! - [`meter`]: host side of the usage aggregator.
//! - [`store`]: what survives a restart (tenants, functions and
//!   usage), locally or in Redis.
//! - [`backend`]: picks the queue and stores (embedded or Redis).
//! - [`platform`]: runtime, queue, stores and meter wired together, and the
//!   calls, jobs and deployments the front door and tests drive.
//! - [`worker`]: worker slots that run queued jobs, and the worker node.
//! - [`node`]: the lifecycle `serve` and `worker` share (start, heartbeat, drain).
//! - [`server`]: the HTTP front door (axum) and the embedded node (`sluice serve`).
//! - [`metrics`]: Prometheus metrics.
//! - [`cli`]: the command-line interface and its commands.
//! - [`allocator`]: large buffers go back to the kernel when freed.
//! - [`priority`]: bulk work (guests, draining refused bodies) on lower-priority threads.

pub mod allocator;
pub mod backend;
pub mod builtins;
pub mod cli;
pub mod http_message;
pub mod meter;
pub mod metrics;
pub mod node;
pub mod platform;
pub mod priority;
pub mod runtime;
pub mod server;
pub mod store;
pub mod worker;
