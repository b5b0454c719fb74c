//! The state-store backends under test, each over fresh, private state:
//! the local stores on a temporary data directory, the Redis stores on a
//! `redis-server` of their own.

use std::path::Path;

use sluice::store::Stores;
use sluice::store::usage::UsageRetention;
use sluice_testkit::{RedisGuard, spawn_redis};

/// Key prefix of the Redis stores under test.
pub const PREFIX: &str = "test";

/// One backend's state, and what keeps it alive (the directory or the server).
pub enum Backend {
    /// Files in a temporary data directory.
    Local(tempfile::TempDir),
    /// A private `redis-server`.
    Redis(RedisGuard),
}

impl Backend {
    /// The local stores on an empty temporary directory.
    pub async fn local() -> Self {
        Self::Local(tempfile::tempdir().expect("temp dir"))
    }

    /// The Redis stores on a fresh `redis-server`.
    pub async fn redis() -> Self {
        Self::Redis(spawn_redis())
    }

    /// Stores over this backend's state, as a node starting up opens them.
    /// Opening again stands for a restart: drop the previous stores first,
    /// as the local stores assume one process per data directory.
    pub async fn open(&self) -> Stores {
        self.open_with(UsageRetention::default()).await
    }

    /// [`open`](Self::open), keeping usage as `retention` says.
    pub async fn open_with(&self, retention: UsageRetention) -> Stores {
        match self {
            Self::Local(dir) => Stores::local_with(dir.path(), retention).expect("the local stores open"),
            Self::Redis(redis) => {
                Stores::redis_with(&redis.url, PREFIX, retention).await.expect("the Redis stores connect")
            }
        }
    }

    /// Everything the backend persisted, as text (keys and values, or file
    /// contents), to check what is never stored.
    pub async fn persisted_text(&self) -> String {
        match self {
            Self::Local(dir) => files_text(dir.path()),
            Self::Redis(redis) => redis_text(&redis.url).await,
        }
    }
}

fn files_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("readable data directory") {
        let path = entry.expect("readable directory entry").path();
        if path.is_dir() {
            text.push_str(&files_text(&path));
        } else {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).expect("readable file")));
        }
        text.push('\n');
    }
    text
}

async fn redis_text(url: &str) -> String {
    let client = redis::Client::open(url).expect("a valid Redis URL");
    let mut con = client.get_multiplexed_async_connection().await.expect("Redis answers");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.expect("KEYS");
    let mut text = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await.expect("TYPE");
        let read = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
            other => panic!("the stores wrote a {other} at {key}, which this dump cannot read"),
        };
        let value: redis::Value = read.query_async(&mut con).await.expect("the value reads");
        text.push_str(&key);
        text.push(' ');
        value_text(&value, &mut text);
        text.push('\n');
    }
    text
}

fn value_text(value: &redis::Value, text: &mut String) {
    match value {
        redis::Value::BulkString(bytes) => text.push_str(&String::from_utf8_lossy(bytes)),
        redis::Value::SimpleString(s) => text.push_str(s),
        redis::Value::Int(n) => text.push_str(&n.to_string()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            for item in items {
                value_text(item, text);
                text.push(' ');
            }
        }
        redis::Value::Map(pairs) => {
            for (key, value) in pairs {
                value_text(key, text);
                text.push(' ');
                value_text(value, text);
                text.push(' ');
            }
        }
        other => text.push_str(&format!("{other:?}")),
    }
}
