//! The usage record every call produces, success or not: what billing and
//! metrics are built from. It is defined beside the queue's job types (a job
//! record carries it) and re-exported here for the runtime's users.

pub use sluice_scheduler::Usage;
