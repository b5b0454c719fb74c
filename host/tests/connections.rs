//! The front door's connections over raw loopback sockets: the connection
//! cap and who is shed at it, the header, idle and body deadlines, and the
//! lingering close that lets a client which sends before it reads see the
//! server's answer.

mod common;

use std::time::Duration;

use common::{TestServer, start_server_with};
use reqwest::StatusCode;
use sluice::server::body_rate::BodyRate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects a raw socket to `server`.
async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.url.trim_start_matches("http://")).await.expect("connect")
}

/// Reads until the server closes (or resets) the connection, for at most
/// `within`; returns what arrived.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    String::from_utf8_lossy(&received).into_owned()
}

/// The `code` of a raw response's JSON error body.
fn error_code(response: &str) -> String {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {response}"));
    json["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// A healthz call over a fresh connection.
async fn healthy(server: &TestServer) -> bool {
    reqwest::get(format!("{}/healthz", server.url)).await.is_ok_and(|r| r.status() == StatusCode::OK)
}

/// Starts an invoke whose body never comes: the connection stays busy.
async fn busy_connection(server: &TestServer, key: &str) -> TcpStream {
    let mut stream = connect(server).await;
    let head = format!(
        "POST /v1/functions/resize/invoke?width=8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: 1000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_of_busy_ones_gets_503_and_is_closed() {
    let server = start_server_with(|c| c.connections.max_connections = Some(1)).await;
    let key = server.tenant("acme").await;
    let holder = busy_connection(&server, &key).await;
    // The server marks the connection busy once it has parsed the head.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut over = connect(&server).await;
    over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("written");
    let answer = read_until_closed(&mut over, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(
        answer.contains(r#"{"error":{"code":"overloaded","message":"too many open connections; try again shortly"}}"#)
    );

    drop(holder);
    let mut served = false;
    for _ in 0..50 {
        if healthy(&server).await {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "a slot frees when the busy connection closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_is_closed_for_a_new_one() {
    let server = start_server_with(|c| c.connections.max_connections = Some(2)).await;
    let mut oldest = connect(&server).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _younger = connect(&server).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert!(healthy(&server).await, "the newcomer is served");
    let said = read_until_closed(&mut oldest, Duration::from_secs(5)).await;
    assert_eq!(said, "", "the idle connection is closed without an answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let server = start_server_with(|c| c.connections.header_timeout = Duration::from_millis(300)).await;
    let mut silent = connect(&server).await;
    let said = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(said, "");
    assert!(healthy(&server).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_slowly_is_cut_off_at_the_header_timeout() {
    let server = start_server_with(|c| c.connections.header_timeout = Duration::from_millis(500)).await;
    let mut slow = connect(&server).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("request line");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        // One header line every 100 ms would keep a per-read timeout happy forever.
        for line in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(format!("X-Slow-{line}: 1\r\n").as_bytes()).await.is_err() {
                return;
            }
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut byte)).await {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is closed while the head is still arriving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let server = start_server_with(|c| c.connections.idle_timeout = Duration::from_millis(300)).await;
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("written");
    let said = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(said.starts_with("HTTP/1.1 200 OK\r\n"), "{said}");
    assert!(!said.to_ascii_lowercase().contains("connection: close"), "kept alive: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_below_the_minimum_rate_is_408_request_timeout() {
    let server = start_server_with(|c| {
        c.connections.body_rate = BodyRate { grace: Duration::from_millis(500), min_bytes_per_second: 1024 };
    })
    .await;
    let key = server.tenant("acme").await;
    let stream = busy_connection(&server, &key).await;
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), reader.read_to_end(&mut received)).await;
    trickle.abort();
    let answer = String::from_utf8_lossy(&received);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert_eq!(error_code(&answer), "request_timeout");
    assert!(healthy(&server).await);
}

/// Writes a 40 MiB body whole, then reads: a client that sends before it reads.
async fn send_whole_then_read(server: &TestServer, head: &str) -> String {
    let body = vec![b'x'; 40 * 1024 * 1024];
    let mut stream = connect(server).await;
    let head = format!("{head}Content-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.expect("the head is sent");
    stream.write_all(&body).await.expect("the whole body is sent: the server reads it");
    read_until_closed(&mut stream, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_an_oversized_body_whole_before_reading_gets_the_413() {
    let server = start_server_with(|_| {}).await;
    let key = server.tenant("acme").await;
    let head =
        format!("POST /v1/functions/resize/invoke?width=8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n");
    let answer = send_whole_then_read(&server, &head).await;
    assert!(answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{answer}");
    assert_eq!(error_code(&answer), "body_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_its_body_whole_with_a_wrong_key_gets_the_401() {
    let server = start_server_with(|_| {}).await;
    let head = "POST /v1/functions/resize/invoke?width=8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n";
    let answer = send_whole_then_read(&server, head).await;
    assert!(answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{answer}");
    assert_eq!(error_code(&answer), "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_urllib_posting_40_mib_reads_the_413() {
    let server = start_server_with(|_| {}).await;
    let key = server.tenant("acme").await;
    let url = format!("{}/v1/functions/resize/invoke?width=8", server.url);
    let script = r#"
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], data=b"x" * (40 * 1024 * 1024), headers={"Authorization": "Bearer " + sys.argv[2]})
try:
    urllib.request.urlopen(request, timeout=30)
    print("no error")
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"#;
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(["-c", script, &url, &key]).output()
    })
    .await
    .expect("joined")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        stdout.trim(),
        r#"413 {"error":{"code":"body_too_large","message":"the request body is larger than the 16777216-byte limit"}}"#
    );
}
