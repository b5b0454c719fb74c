//! One conformance suite per state-store trait: every scenario runs against
//! every backend, so the local and Redis stores cannot drift apart. A
//! scenario is an `async fn(Backend)` written once; [`conformance!`] turns
//! it into one named test per backend (`tenants::local::…`,
//! `tenants::redis::…`). Behaviour only one backend has stays with that
//! backend (unit tests of `store::local`, and `tests/redis_stores.rs` for
//! several Redis clients at once).

#[path = "../common/mod.rs"]
mod common;

/// One `#[tokio::test]` per backend and scenario, in a module per backend.
/// A new backend is one more line here (and its constructor on `Backend`).
macro_rules! conformance {
    ($($scenario:ident),+ $(,)?) => {
        conformance!(@backend local, $($scenario),+);
        conformance!(@backend redis, $($scenario),+);
    };
    (@backend $backend:ident, $($scenario:ident),+) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(crate::common::stores::Backend::$backend().await).await;
                }
            )+
        }
    };
}

mod functions;
mod tenants;
mod usage;
