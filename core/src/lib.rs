//! Sluice's shared vocabulary: the facts every layer must agree on, defined
//! once so the compiler checks that the queue, the runtime, the HTTP API and
//! the CLI agree.
//!
//! - [`ErrorCode`]: every stable error code, with its HTTP status, whether
//!   it carries `Retry-After`, and whether a job that failed with it is
//!   retried.
//! - [`CallRequest`] and [`CallOutput`]: a call's input and output, the same
//!   type from the HTTP request to the worker and back.
//! - [`TenantId`] and [`Version`]: newtypes for the ids that travel together
//!   with function names, so they cannot be swapped.
//! - [`redact_url`]: how a connection URL (and its password) may be shown.
//! - [`whole_number`]: counts in JSON bodies, written `5` or `5.0`.
//! - [`World`]: which WIT world a component implements.

mod call;
mod error_code;
mod ids;
mod url;
pub mod whole_number;
mod world;

pub use call::{CallOutput, CallRequest, Outcome};
pub use error_code::{ErrorCode, UnknownCode};
pub use ids::{TenantId, Version};
pub use url::redact_url;
pub use world::World;
