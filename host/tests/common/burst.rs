//! A tenant's burst of async jobs from parallel submitters, and a second
//! tenant's sync calls made while it drains: the fair-scheduling tests run
//! them against an embedded node and against front doors sharing a Redis.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The small resize every burst job and quiet call makes.
pub const RESIZE: &str = "/v1/functions/resize";

/// The fair-scheduling scenario: `noisy` submits 400 async resizes from 8
/// parallel clients over the front doors `urls` while `quiet` makes sync
/// calls through the last one. Every job is accepted and succeeds, and
/// every quiet call is answered 200.
pub async fn drains_while_another_tenant_is_served(urls: &[String], noisy: &str, quiet: &str) {
    let photo = super::photo("jpg-size-1x1.jpg");
    let stop = Arc::new(AtomicBool::new(false));
    let quiet_url = urls.last().expect("a front door").clone();
    let calls = tokio::spawn(quiet_calls(quiet_url, quiet.to_owned(), photo.clone(), Arc::clone(&stop)));
    let burst = submit(urls, noisy, &photo, 400, 8).await;
    assert_eq!(burst.answers, BTreeMap::from([(202, 400)]), "every job of the burst is accepted");
    let ended = settle(&urls[0], noisy, &burst.ids, Duration::from_secs(120)).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(ended, BTreeMap::from([("succeeded".to_owned(), 400)]));
    let answers = calls.await.expect("quiet calls");
    assert_eq!(
        answers.keys().copied().collect::<Vec<_>>(),
        [200],
        "the other tenant was served throughout: {answers:?}"
    );
}

/// What a burst's submissions were answered.
#[derive(Debug, Default)]
pub struct Burst {
    /// HTTP status → how many submissions got it.
    pub answers: BTreeMap<u16, usize>,
    /// The accepted jobs' ids.
    pub ids: Vec<String>,
}

/// Submits `jobs` async resizes of `photo` by `key` from `submitters`
/// parallel clients, spread over the front doors `urls`.
pub async fn submit(urls: &[String], key: &str, photo: &[u8], jobs: usize, submitters: usize) -> Burst {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..submitters {
        let (client, next, urls, key, photo) =
            (client.clone(), Arc::clone(&next), urls.to_vec(), key.to_owned(), photo.to_vec());
        tasks.spawn(async move {
            let mut burst = Burst::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= jobs {
                    return burst;
                }
                let url = format!("{}{RESIZE}/jobs?width=8", urls[n % urls.len()]);
                let response = client.post(url).bearer_auth(&key).body(photo.clone()).send().await.expect("sent");
                let status = response.status().as_u16();
                *burst.answers.entry(status).or_default() += 1;
                if status == 202 {
                    let accepted: Value = response.json().await.expect("json");
                    burst.ids.push(accepted["id"].as_str().expect("id").to_owned());
                }
            }
        });
    }
    let mut burst = Burst::default();
    while let Some(part) = tasks.join_next().await {
        let part = part.expect("submitter");
        for (status, count) in part.answers {
            *burst.answers.entry(status).or_default() += count;
        }
        burst.ids.extend(part.ids);
    }
    burst
}

/// Sync resizes by `key` through `url`, one after another, until `stop`
/// is set; returns how many got each status.
pub async fn quiet_calls(url: String, key: String, photo: Vec<u8>, stop: Arc<AtomicBool>) -> BTreeMap<u16, usize> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut answers = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let response = client
            .post(format!("{url}{RESIZE}/invoke?width=8"))
            .bearer_auth(&key)
            .body(photo.clone())
            .send()
            .await
            .expect("sent");
        *answers.entry(response.status().as_u16()).or_default() += 1;
        let _ = response.bytes().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answers
}

/// Waits until every job in `ids` has ended (at most `within`); returns
/// how many ended with each status, `unfinished` for the rest.
pub async fn settle(url: &str, key: &str, ids: &[String], within: Duration) -> BTreeMap<String, usize> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    let mut ended = BTreeMap::new();
    for id in ids {
        let status = loop {
            let job: Value = client
                .get(format!("{url}/v1/jobs/{id}"))
                .bearer_auth(key)
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            let status = job["status"].as_str().unwrap_or("?").to_owned();
            if ["succeeded", "failed", "cancelled"].contains(&status.as_str()) {
                break status;
            }
            if Instant::now() >= deadline {
                break "unfinished".to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        *ended.entry(status).or_default() += 1;
    }
    ended
}
