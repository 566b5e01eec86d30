//! Group commit: many callers' small durable writes made as one.
//!
//! A caller submits an item and waits until it is durable. When no write is in flight the caller's
//! submission starts a writer task; while that task writes, new submissions queue up, and the next write
//! takes all of them. Unloaded every item is written at once on its own (no added latency); under load
//! one store call serves everything that arrived during the previous one.

use std::future::Future;
use std::sync::{Arc, Mutex as SyncMutex};

use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

struct Pending<T> {
    items: Vec<(T, Waiter)>,
    /// Whether a writer task runs (it keeps writing while anything is pending).
    writing: bool,
}

/// The queue of one log's pending items.
pub struct GroupCommit<T> {
    pending: SyncMutex<Pending<T>>,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        GroupCommit {
            pending: SyncMutex::new(Pending {
                items: Vec::new(),
                writing: false,
            }),
        }
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Adds `item` to the next commit and waits until `write` made it durable (or says why not).
    /// `write` commits one batch; every caller passes an equivalent one, and the writer task uses the
    /// one of the caller that started it. The task is spawned, so a caller that goes away (an HTTP
    /// client hanging up) cannot strand the items that joined its commit.
    pub async fn submit<W, F>(self: &Arc<Self>, item: T, write: W) -> Result<(), String>
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        if self.enqueue(item, sender) {
            tokio::spawn(self.clone().write_all(write));
        }
        receiver
            .await
            .unwrap_or_else(|_| Err("the commit writer stopped".to_string()))
    }

    /// Queues an item; returns whether the caller must start the writer.
    fn enqueue(&self, item: T, waiter: Waiter) -> bool {
        let mut pending = lock(&self.pending);
        pending.items.push((item, waiter));
        !std::mem::replace(&mut pending.writing, true)
    }

    /// The next batch, or `None` (and the writer stops) when nothing is pending.
    fn take(&self) -> Option<Vec<(T, Waiter)>> {
        let mut pending = lock(&self.pending);
        if pending.items.is_empty() {
            pending.writing = false;
            return None;
        }
        Some(std::mem::take(&mut pending.items))
    }

    /// Writes batches until nothing is pending, answering each batch's waiters.
    async fn write_all<W, F>(self: Arc<Self>, write: W)
    where
        W: Fn(Vec<T>) -> F,
        F: Future<Output = Result<(), String>>,
    {
        while let Some(batch) = self.take() {
            let (items, waiters): (Vec<T>, Vec<Waiter>) = batch.into_iter().unzip();
            let result = write(items).await;
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

/// A name for this process's commits, unique per run and ordered by start time: the start time in
/// milliseconds (11 hex digits, fixed width until the year 2527), then 6 hex digits mixing the
/// sub-millisecond time with the process id. Short on purpose: object names built from it must stay well
/// inside file-system limits of stores that map keys to files (s3s-fs encodes whole keys into names).
pub fn process_epoch() -> String {
    let now = chrono::Utc::now();
    let salt = (now.timestamp_subsec_nanos() ^ std::process::id().rotate_left(12)) & 0xff_ffff;
    format!("{:011x}{salt:06x}", now.timestamp_millis().max(0))
}

fn lock<T>(mutex: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a push or a take: the data stays consistent even after a panic.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
