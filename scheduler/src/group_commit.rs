//! Group commit: many callers' small durable writes made as one.
//!
//! A caller submits an item and waits until it is durable. When no write is in flight the caller's
//! submission starts a writer task; while that task writes, new submissions queue up, and the next write
//! takes all of them. Unloaded every item is written at once on its own (no added latency); under load
//! one store call serves everything that arrived during the previous one.

use std::sync::{Arc, Mutex as SyncMutex};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::lock;

/// Makes one batch of items durable in one go (one store write, or a few side by side).
#[async_trait]
pub trait Commit<T>: Send + Sync + 'static {
    async fn commit(&self, batch: Vec<T>) -> Result<(), String>;
}

type Waiter = oneshot::Sender<Result<(), String>>;

struct Pending<T> {
    items: Vec<(T, Waiter)>,
    /// Whether a writer task runs (it keeps writing while anything is pending).
    writing: bool,
}

/// The queue of one log's pending items and the writer that commits them.
pub struct GroupCommit<T, W> {
    pending: SyncMutex<Pending<T>>,
    writer: Arc<W>,
}

impl<T, W: std::fmt::Debug> std::fmt::Debug for GroupCommit<T, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("writer", &self.writer)
            .finish()
    }
}

impl<T: Send + 'static, W: Commit<T>> GroupCommit<T, W> {
    pub fn new(writer: Arc<W>) -> Arc<Self> {
        Arc::new(GroupCommit {
            pending: SyncMutex::new(Pending {
                items: Vec::new(),
                writing: false,
            }),
            writer,
        })
    }

    /// The writer, for what it does besides committing.
    pub fn writer(&self) -> &Arc<W> {
        &self.writer
    }

    /// Adds `item` to the next commit and waits until it is durable (or says why not). The writer runs
    /// in a task of its own, so a caller that goes away (an HTTP client hanging up) cannot strand the
    /// items that joined its commit.
    pub async fn submit(self: &Arc<Self>, item: T) -> Result<(), String> {
        let (sender, receiver) = oneshot::channel();
        if self.enqueue(item, sender) {
            tokio::spawn(self.clone().write_all());
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
    async fn write_all(self: Arc<Self>) {
        while let Some(batch) = self.take() {
            let (items, waiters): (Vec<T>, Vec<Waiter>) = batch.into_iter().unzip();
            let result = self.writer.commit(items).await;
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

/// A name for this process's commits, unique per run and ordered by start time: the start time in
/// milliseconds (11 hex digits, fixed width until the year 2527), then 6 random hex digits. Short on
/// purpose: object names built from it must stay well
/// inside file-system limits of stores that map keys to files (s3s-fs encodes whole keys into names).
pub fn process_epoch() -> String {
    let now = chrono::Utc::now();
    // Random, not derived from the clock or the pid: every scheduler pod is pid 1, and one whose clock
    // is wrong must not name a segment like one another holder of the same shard wrote.
    let salt = (uuid::Uuid::new_v4().as_u128() as u32) & 0xff_ffff;
    format!("{:011x}{salt:06x}", now.timestamp_millis().max(0))
}
