//! How the queue (and the host's state stores, which share the recipe)
//! connect to Redis so that an outage is reported promptly instead of
//! waited out.

use std::time::Duration;

use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A connection manager whose connects and responses time out after
/// `timeout`, so an outage is reported instead of waited out. The queue and
/// the host's state stores both connect this way.
pub async fn connection_manager(client: &Client, timeout: Duration) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    client.get_connection_manager_with_config(config).await
}

/// Pings a connection every 500 ms until dropped. A connection manager
/// notices a dead connection only when a command fails on it; after an
/// outage the ping takes that failure, so callers do not.
#[derive(Debug)]
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    /// Starts pinging `con`.
    pub fn start(mut con: ConnectionManager) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut con).await;
            }
        }))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}
