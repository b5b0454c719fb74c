//! Coalescing of concurrent calls into one script run. A script run costs
//! a round trip and a fixed share of Redis's time however little it does,
//! so while one run of a kind is in flight, the calls that arrive meanwhile
//! wait and go together in the next. A lone call goes at once: batching
//! adds no latency when there is nothing to share it with.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::QueueError;

/// How much one run may carry: the first call always goes, however heavy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BatchLimits {
    /// Most calls in one run.
    pub calls: usize,
    /// Most bytes of arguments in one run.
    pub bytes: usize,
}

/// The script run behind a batch: takes the calls in arrival order and
/// answers one result per call, in the same order.
pub(super) type Run<T, R> =
    Box<dyn FnMut(Vec<T>) -> Pin<Box<dyn Future<Output = Result<Vec<R>, QueueError>> + Send>> + Send>;

/// What becomes of a result whose caller stopped waiting for it.
pub(super) type Unclaimed<R> = Box<dyn FnMut(R) + Send>;

type Call<T, R> = (T, oneshot::Sender<Result<R, QueueError>>);

/// Calls of one kind, sent to the task that runs them in batches.
pub(super) struct Batcher<T, R> {
    calls: mpsc::Sender<Call<T, R>>,
}

/// Calls waiting for the next run, at most; more wait to be queued.
const WAITING_CALLS: usize = 4096;

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the task that runs batches with `run`; it ends when the
    /// batcher is dropped (the caller also keeps its handle to abort it).
    pub(super) fn start(
        limits: BatchLimits,
        weight: fn(&T) -> usize,
        mut run: Run<T, R>,
        mut unclaimed: Unclaimed<R>,
    ) -> (Self, JoinHandle<()>) {
        let (calls, mut waiting) = mpsc::channel::<Call<T, R>>(WAITING_CALLS);
        let task = tokio::spawn(async move {
            let mut carried: Option<Call<T, R>> = None;
            loop {
                let first = match carried.take() {
                    Some(call) => call,
                    None => match waiting.recv().await {
                        Some(call) => call,
                        None => return,
                    },
                };
                let mut bytes = weight(&first.0);
                let mut batch = vec![first];
                while batch.len() < limits.calls {
                    let Ok(call) = waiting.try_recv() else { break };
                    bytes = bytes.saturating_add(weight(&call.0));
                    if bytes > limits.bytes {
                        carried = Some(call);
                        break;
                    }
                    batch.push(call);
                }
                let (items, replies): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
                let calls = replies.len();
                match run(items).await {
                    Ok(results) if results.len() == calls => {
                        for (result, reply) in results.into_iter().zip(replies) {
                            if let Err(Ok(result)) = reply.send(Ok(result)) {
                                unclaimed(result);
                            }
                        }
                    }
                    Ok(results) => {
                        let error =
                            QueueError::Unavailable(format!("a batch of {calls} calls got {} answers", results.len()));
                        results.into_iter().for_each(&mut unclaimed);
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                    Err(error) => {
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        (Self { calls }, task)
    }

    /// Runs `item` in the next batch and answers its result.
    pub(super) async fn call(&self, item: T) -> Result<R, QueueError> {
        let (reply, answer) = oneshot::channel();
        let closed = || QueueError::Unavailable("the queue is shutting down".to_owned());
        self.calls.send((item, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn doubling(runs: Arc<AtomicUsize>, sizes: Arc<std::sync::Mutex<Vec<usize>>>) -> Run<u32, u32> {
        Box::new(move |items: Vec<u32>| {
            runs.fetch_add(1, Ordering::SeqCst);
            sizes.lock().expect("sizes").push(items.len());
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(items.into_iter().map(|n| n * 2).collect())
            })
        })
    }

    #[tokio::test]
    async fn calls_arriving_while_a_run_is_in_flight_share_the_next_run() {
        let runs = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let limits = BatchLimits { calls: 64, bytes: usize::MAX };
        let (batcher, _task) =
            Batcher::start(limits, |_| 0, doubling(Arc::clone(&runs), Arc::clone(&sizes)), Box::new(|_| {}));
        let batcher = Arc::new(batcher);
        let calls: Vec<_> = (0..10u32)
            .map(|n| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { batcher.call(n).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.expect("task").expect("answer"));
        }
        assert_eq!(answers, (0..10).map(|n| n * 2).collect::<Vec<_>>());
        assert!(runs.load(Ordering::SeqCst) < 10, "some calls shared a run: {:?}", sizes.lock().expect("sizes"));
    }

    #[tokio::test]
    async fn a_run_carries_at_most_its_limits_but_always_its_first_call() {
        let runs = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let limits = BatchLimits { calls: 3, bytes: 10 };
        let (batcher, _task) = Batcher::start(
            limits,
            |n: &u32| *n as usize,
            doubling(Arc::clone(&runs), Arc::clone(&sizes)),
            Box::new(|_| {}),
        );
        let batcher = Arc::new(batcher);
        // 50 weighs more than a run may carry: it still goes, alone.
        let weights = [1u32, 50, 1, 1, 1, 1, 1, 1];
        let calls: Vec<_> = weights
            .iter()
            .map(|&n| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { batcher.call(n).await })
            })
            .collect();
        for (call, n) in calls.into_iter().zip(weights) {
            assert_eq!(call.await.expect("task").expect("answer"), n * 2);
        }
        let sizes = sizes.lock().expect("sizes").clone();
        assert_eq!(sizes.iter().sum::<usize>(), weights.len());
        assert!(sizes.iter().all(|&size| size <= 3), "{sizes:?}");
    }

    #[tokio::test]
    async fn a_result_nobody_waits_for_is_handed_back() {
        let unclaimed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handed_back = Arc::clone(&unclaimed);
        let run: Run<u32, u32> = Box::new(|items: Vec<u32>| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(items)
            })
        });
        let limits = BatchLimits { calls: 8, bytes: usize::MAX };
        let (batcher, _task) =
            Batcher::start(limits, |_| 0, run, Box::new(move |n| handed_back.lock().expect("unclaimed").push(n)));
        let gave_up = tokio::time::timeout(Duration::from_millis(5), batcher.call(7)).await;
        assert!(gave_up.is_err(), "the caller stopped waiting");
        assert_eq!(batcher.call(8).await, Ok(8));
        assert_eq!(*unclaimed.lock().expect("unclaimed"), vec![7]);
    }

    #[tokio::test]
    async fn a_failed_run_fails_every_call_in_it() {
        let run: Run<u32, u32> =
            Box::new(|_| Box::pin(async { Err(QueueError::Unavailable("connection refused".to_owned())) }));
        let limits = BatchLimits { calls: 8, bytes: usize::MAX };
        let (batcher, _task) = Batcher::start(limits, |_| 0, run, Box::new(|_| {}));
        assert_eq!(batcher.call(1).await, Err(QueueError::Unavailable("connection refused".to_owned())));
    }
}
