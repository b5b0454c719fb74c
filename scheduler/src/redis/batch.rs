//! Coalescing of concurrent calls into one script run. A script run costs
//! a round trip and a fixed share of Redis's time however little it does,
//! so while one run of a kind is in flight, the calls that arrive meanwhile
//! wait and go together in the next. A call that finds nothing in flight
//! runs at once on its caller's task: batching adds no hop and no latency
//! when there is nothing to share a run with.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

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
    Arc<dyn Fn(Vec<T>) -> Pin<Box<dyn Future<Output = Result<Vec<R>, QueueError>> + Send>> + Send + Sync>;

/// What becomes of a result whose caller stopped waiting for it.
pub(super) type Unclaimed<R> = Arc<dyn Fn(R) + Send + Sync>;

type Waiting<T, R> = (T, oneshot::Sender<Result<R, QueueError>>);

/// Calls of one kind: run alone when nothing is in flight, in batches of
/// what waited while something was.
pub(super) struct Batcher<T, R> {
    inner: Arc<Inner<T, R>>,
}

struct Inner<T, R> {
    limits: BatchLimits,
    weight: fn(&T) -> usize,
    run: Run<T, R>,
    unclaimed: Unclaimed<R>,
    state: Mutex<State<T, R>>,
}

struct State<T, R> {
    /// A run of this kind is in flight: new calls wait for the next one.
    in_flight: bool,
    waiting: VecDeque<Waiting<T, R>>,
}

fn closed() -> QueueError {
    QueueError::Unavailable("the queue is shutting down".to_owned())
}

fn miscounted(calls: usize, answers: usize) -> QueueError {
    QueueError::Unavailable(format!("a batch of {calls} calls got {answers} answers"))
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// A batcher whose runs are `run`; results whose caller left go to
    /// `unclaimed`.
    pub(super) fn new(limits: BatchLimits, weight: fn(&T) -> usize, run: Run<T, R>, unclaimed: Unclaimed<R>) -> Self {
        let state = Mutex::new(State { in_flight: false, waiting: VecDeque::new() });
        Self { inner: Arc::new(Inner { limits, weight, run, unclaimed, state }) }
    }

    /// Runs `item`, alone when nothing is in flight, else in the next
    /// batch, and answers its result.
    pub(super) async fn call(&self, item: T) -> Result<R, QueueError> {
        let queued = {
            let mut state = self.inner.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.in_flight {
                let (reply, answer) = oneshot::channel();
                state.waiting.push_back((item, reply));
                Err(answer)
            } else {
                state.in_flight = true;
                Ok(item)
            }
        };
        match queued {
            Ok(item) => {
                // What arrives meanwhile runs next, also if this caller leaves.
                let _next = HandOff(Arc::clone(&self.inner));
                let mut results = (self.inner.run)(vec![item]).await?;
                let answers = results.len();
                match (results.pop(), answers) {
                    (Some(result), 1) => Ok(result),
                    _ => Err(miscounted(1, answers)),
                }
            }
            Err(answer) => answer.await.map_err(|_| closed())?,
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Inner<T, R> {
    /// Starts the next batch on a task of its own, or marks nothing in
    /// flight when no call waits.
    fn hand_off(self: &Arc<Self>) {
        let batch = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.waiting.is_empty() {
                state.in_flight = false;
                return;
            }
            self.next_batch(&mut state.waiting)
        };
        // Without a runtime (it is shutting down) the waiting calls fail.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            let _next = HandOff(Arc::clone(&inner));
            inner.run_batch(batch).await;
        });
    }

    /// The oldest waiting calls, within the limits.
    fn next_batch(&self, waiting: &mut VecDeque<Waiting<T, R>>) -> Vec<Waiting<T, R>> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while let Some((item, _)) = waiting.front() {
            bytes = bytes.saturating_add((self.weight)(item));
            if !batch.is_empty() && (batch.len() >= self.limits.calls || bytes > self.limits.bytes) {
                break;
            }
            batch.extend(waiting.pop_front());
        }
        batch
    }

    /// Runs `batch` and answers each caller; results nobody waits for any
    /// more go to `unclaimed`.
    async fn run_batch(&self, batch: Vec<Waiting<T, R>>) {
        let (items, replies): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
        let calls = replies.len();
        match (self.run)(items).await {
            Ok(results) if results.len() == calls => {
                for (result, reply) in results.into_iter().zip(replies) {
                    if let Err(Ok(result)) = reply.send(Ok(result)) {
                        (self.unclaimed)(result);
                    }
                }
            }
            Ok(results) => {
                let error = miscounted(calls, results.len());
                results.into_iter().for_each(|result| (self.unclaimed)(result));
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
}

/// Hands the batcher on when dropped: the run it guards ended, or its
/// caller left mid-run.
struct HandOff<T: Send + 'static, R: Send + 'static>(Arc<Inner<T, R>>);

impl<T: Send + 'static, R: Send + 'static> Drop for HandOff<T, R> {
    fn drop(&mut self) {
        self.0.hand_off();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    type Sizes = Arc<Mutex<Vec<usize>>>;

    /// A run that takes 20 ms and doubles each item, noting batch sizes.
    fn doubling(sizes: &Sizes) -> Run<u32, u32> {
        let sizes = Arc::clone(sizes);
        Arc::new(move |items: Vec<u32>| {
            sizes.lock().expect("sizes").push(items.len());
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(items.into_iter().map(|n| n * 2).collect())
            })
        })
    }

    fn calls(batcher: &Arc<Batcher<u32, u32>>, items: &[u32]) -> Vec<tokio::task::JoinHandle<Result<u32, QueueError>>> {
        items
            .iter()
            .map(|&n| {
                let batcher = Arc::clone(batcher);
                tokio::spawn(async move { batcher.call(n).await })
            })
            .collect()
    }

    #[tokio::test]
    async fn a_lone_call_runs_alone_and_those_arriving_meanwhile_share_the_next_run() {
        let sizes = Sizes::default();
        let limits = BatchLimits { calls: 64, bytes: usize::MAX };
        let batcher = Arc::new(Batcher::new(limits, |_| 0, doubling(&sizes), Arc::new(|_| {})));
        let mut answers = Vec::new();
        for call in calls(&batcher, &(0..10).collect::<Vec<_>>()) {
            answers.push(call.await.expect("task").expect("answer"));
        }
        assert_eq!(answers, (0..10).map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(*sizes.lock().expect("sizes"), [1, 9]);
        assert_eq!(batcher.call(5).await, Ok(10), "idle again: the next call runs at once");
        assert_eq!(*sizes.lock().expect("sizes"), [1, 9, 1]);
    }

    #[tokio::test]
    async fn a_run_carries_at_most_its_limits_but_always_its_first_call() {
        let sizes = Sizes::default();
        let limits = BatchLimits { calls: 3, bytes: 10 };
        let batcher = Arc::new(Batcher::new(limits, |n: &u32| *n as usize, doubling(&sizes), Arc::new(|_| {})));
        // 50 weighs more than a run may carry: it still goes, alone.
        let weights = [1u32, 50, 1, 1, 1, 1, 1, 1];
        for (call, n) in calls(&batcher, &weights).into_iter().zip(weights) {
            assert_eq!(call.await.expect("task").expect("answer"), n * 2);
        }
        assert_eq!(*sizes.lock().expect("sizes"), [1, 1, 3, 3]);
    }

    #[tokio::test]
    async fn a_result_nobody_waits_for_is_handed_back() {
        let sizes = Sizes::default();
        let unclaimed = Arc::new(Mutex::new(Vec::new()));
        let handed_back = Arc::clone(&unclaimed);
        let limits = BatchLimits { calls: 8, bytes: usize::MAX };
        let batcher = Arc::new(Batcher::new(
            limits,
            |_| 0,
            doubling(&sizes),
            Arc::new(move |n| handed_back.lock().expect("unclaimed").push(n)),
        ));
        let running = calls(&batcher, &[1]);
        tokio::task::yield_now().await;
        let gave_up = tokio::time::timeout(Duration::from_millis(5), batcher.call(7)).await;
        assert!(gave_up.is_err(), "the caller stopped waiting");
        assert_eq!(running.into_iter().next().expect("call").await.expect("task"), Ok(2));
        assert_eq!(batcher.call(8).await, Ok(16));
        assert_eq!(*unclaimed.lock().expect("unclaimed"), vec![14]);
    }

    #[tokio::test]
    async fn a_caller_leaving_mid_run_does_not_stall_the_calls_behind_it() {
        let sizes = Sizes::default();
        let limits = BatchLimits { calls: 8, bytes: usize::MAX };
        let batcher = Arc::new(Batcher::new(limits, |_| 0, doubling(&sizes), Arc::new(|_| {})));
        let leaving = Arc::clone(&batcher);
        let left = tokio::spawn(async move { leaving.call(1).await });
        tokio::task::yield_now().await;
        let behind = calls(&batcher, &[2, 3]);
        left.abort();
        for (call, n) in behind.into_iter().zip([2, 3]) {
            assert_eq!(call.await.expect("task"), Ok(n * 2));
        }
    }

    #[tokio::test]
    async fn a_failed_run_fails_every_call_in_it() {
        let run: Run<u32, u32> =
            Arc::new(|_| Box::pin(async { Err(QueueError::Unavailable("connection refused".to_owned())) }));
        let limits = BatchLimits { calls: 8, bytes: usize::MAX };
        let batcher = Batcher::new(limits, |_| 0, run, Arc::new(|_| {}));
        assert_eq!(batcher.call(1).await, Err(QueueError::Unavailable("connection refused".to_owned())));
        assert_eq!(batcher.call(2).await, Err(QueueError::Unavailable("connection refused".to_owned())), "again");
    }
}
