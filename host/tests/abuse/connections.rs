//! Connection attacks by an anonymous client: idle sockets at the cap,
//! heads sent slowly, bodies trickled, and oversized bodies sent whole
//! before reading.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Node, Victim};

/// Reads until the server closes (or resets) `stream`; returns what
/// arrived and when the connection ended.
async fn read_until_closed(mut stream: TcpStream) -> (String, Instant) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), Instant::now())
}

/// The `code` of a raw response's JSON error body.
fn error_code(response: &str) -> String {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {response}"));
    json["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_past_the_cap_are_shed_and_closed_within_the_header_timeout() {
    const CAP: usize = 16;
    let header_timeout = Duration::from_secs(2);
    let node = Node::start(&["--max-connections", "16", "--header-timeout", "2s"]);
    let victim = Victim::new(&node).await;

    let attack = async {
        let started = Instant::now();
        let mut sockets = Vec::new();
        for _ in 0..CAP * 3 {
            sockets.push(TcpStream::connect(node.addr()).await.expect("the attacker connects"));
        }
        let closed = futures_util::future::join_all(sockets.into_iter().map(read_until_closed)).await;
        (started, closed)
    };
    let ((started, closed), during) = victim.served_during(&node, attack).await;
    assert!(!during.is_empty(), "the victim was probed during the attack");
    for (said, at) in closed {
        assert_eq!(said, "", "an idle socket gets no answer");
        assert!(
            at.duration_since(started) < header_timeout + Duration::from_secs(3),
            "an idle socket outlived the header timeout: {:?}",
            at.duration_since(started)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_sent_slowly_are_cut_off_at_the_header_timeout() {
    let node = Node::start(&["--header-timeout", "2s"]);
    let victim = Victim::new(&node).await;

    let attack = async {
        let slowloris = (0..8).map(|_| async {
            let started = Instant::now();
            let stream = TcpStream::connect(node.addr()).await.expect("the attacker connects");
            let (mut reader, mut writer) = stream.into_split();
            let dribble = async move {
                let _ = writer.write_all(b"GET /healthz HTTP/1.1\r\n").await;
                for line in 0..100 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if writer.write_all(format!("X-Slow-{line}: 1\r\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            };
            let mut said = Vec::new();
            tokio::select! {
                _ = reader.read_to_end(&mut said) => {}
                () = dribble => panic!("the slow head was never cut off"),
            }
            (String::from_utf8_lossy(&said).into_owned(), started.elapsed())
        });
        futures_util::future::join_all(slowloris).await
    };
    let (cut, _) = victim.served_during(&node, attack).await;
    for (said, after) in cut {
        assert_eq!(said, "", "a slow head gets no answer");
        assert!(after < Duration::from_secs(5), "cut off after {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_request_timeout() {
    let node = Node::start(&["--body-grace", "1s", "--body-min-rate-kb", "1"]);
    let victim = Victim::new(&node).await;
    let key = node.tenant("attacker").await;

    let attack = async {
        let started = Instant::now();
        let stream = TcpStream::connect(node.addr()).await.expect("the attacker connects");
        let (reader, mut writer) = stream.into_split();
        let head = format!(
            "POST /v1/functions/resize/invoke?width=8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: 100000\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await.expect("the head is sent");
        let trickle = tokio::spawn(async move {
            for _ in 0..200 {
                if writer.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut said = Vec::new();
        let mut reader = reader;
        let _ = reader.read_to_end(&mut said).await;
        trickle.abort();
        (String::from_utf8_lossy(&said).into_owned(), started.elapsed())
    };
    let ((said, after), _) = victim.served_during(&node, attack).await;
    assert!(said.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{said}");
    assert_eq!(error_code(&said), "request_timeout");
    assert!(after < Duration::from_secs(15), "answered after {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_sent_whole_before_reading_gets_the_413() {
    let node = Node::start(&[]);
    let victim = Victim::new(&node).await;
    let key = node.tenant("attacker").await;

    let attack = async {
        let body = vec![b'x'; 40 * 1024 * 1024];
        let mut stream = TcpStream::connect(node.addr()).await.expect("the attacker connects");
        let head = format!(
            "POST /v1/functions/resize/invoke?width=8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("the head is sent");
        stream.write_all(&body).await.expect("the server reads the whole body");
        read_until_closed(stream).await.0
    };
    let (said, _) = victim.served_during(&node, attack).await;
    assert!(said.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{said}");
    assert_eq!(error_code(&said), "body_too_large");
}
