//! Support for Sluice's tests and benchmarks, and nothing else: production
//! crates never depend on it (only `[dev-dependencies]` and the benchmark
//! crate do), so the process spawning and panicking on setup failures here
//! never reach a deployed binary.
//!
//! - [`redis`]: a throwaway `redis-server` on a free loopback port, killed
//!   on drop, that a test can crash and restart.
//! - [`tls`]: the same, speaking only TLS, with a throwaway CA.
//! - [`ports`]: free loopback ports for servers started by a test.

pub mod ports;
pub mod redis;
pub mod tls;

pub use ports::free_port;
pub use redis::{AppendFsync, RedisGuard, spawn_redis, spawn_redis_with};
pub use tls::{TLS_REDIS_PASSWORD, TlsRedisGuard, spawn_redis_tls};
