//! The embedded queue: in-process, with the broker's semantics (priorities, prefetch, manual acks,
//! redelivery on consumer loss, dead-letter queues) and a journal of one file per message in the data
//! directory, so messages published and not yet acknowledged survive a restart of the process.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    dead_queue_name, Consumer, Delivery, JobQueue, Message, QueueError, QueueSpec, Settle,
    DEAD_DETAIL_HEADER, DEAD_REASON_HEADER, ORIGIN_QUEUE_HEADER,
};

/// Ready messages are ordered by priority (highest first), then by publication order.
type ReadyKey = (Reverse<u8>, u64);

#[derive(Debug, Default)]
struct QueueState {
    max_priority: u8,
    ready: BTreeMap<ReadyKey, Pending>,
    /// Delivered, not yet settled: sequence number → (message, consumer holding it).
    unacked: HashMap<u64, (Pending, u64)>,
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    message: Message,
    redelivered: bool,
}

#[derive(Debug)]
struct Inner {
    queues: Mutex<HashMap<String, QueueState>>,
    changed: Notify,
    next_seq: AtomicU64,
    next_consumer: AtomicU64,
    journal: Option<PathBuf>,
    /// Claimed roles and the connection holding each.
    claims: Mutex<HashMap<String, u64>>,
    next_connection: AtomicU64,
}

/// A handle on an in-process broker. Clones share one connection; [`MemoryQueue::connect_again`] opens
/// another one to the same broker (what a second process would have), which matters only for claims.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
    connection: u64,
}

impl MemoryQueue {
    /// A queue that forgets everything when the process ends (tests).
    pub fn ephemeral() -> MemoryQueue {
        MemoryQueue::with_journal(None)
    }

    /// A queue journalled under `dir`; messages found there are ready again.
    pub fn open(dir: &Path) -> Result<MemoryQueue, QueueError> {
        let queue = MemoryQueue::with_journal(Some(dir.to_path_buf()));
        queue.restore(dir)?;
        Ok(queue)
    }

    fn with_journal(journal: Option<PathBuf>) -> MemoryQueue {
        MemoryQueue {
            inner: Arc::new(Inner {
                queues: Mutex::new(HashMap::new()),
                changed: Notify::new(),
                next_seq: AtomicU64::new(1),
                next_consumer: AtomicU64::new(1),
                journal,
                claims: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(2),
            }),
            connection: 1,
        }
    }

    /// Another connection to the same in-process broker.
    pub fn connect_again(&self) -> MemoryQueue {
        MemoryQueue {
            inner: self.inner.clone(),
            connection: self.inner.next_connection.fetch_add(1, Ordering::SeqCst),
        }
    }

    fn claims(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.inner
            .claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn restore(&self, dir: &Path) -> Result<(), QueueError> {
        std::fs::create_dir_all(dir).map_err(|e| journal_error(dir, e))?;
        let mut max_seq = 0;
        let mut queues = self.inner.lock();
        for queue_dir in std::fs::read_dir(dir).map_err(|e| journal_error(dir, e))? {
            let queue_dir = queue_dir.map_err(|e| journal_error(dir, e))?.path();
            let Some(name) = queue_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !queue_dir.is_dir() {
                continue;
            }
            let state = queues.entry(name).or_default();
            for file in std::fs::read_dir(&queue_dir).map_err(|e| journal_error(&queue_dir, e))? {
                let path = file.map_err(|e| journal_error(&queue_dir, e))?.path();
                let Some(seq) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let bytes = std::fs::read(&path).map_err(|e| journal_error(&path, e))?;
                let (message, _): (Message, usize) =
                    bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                        .map_err(|e| journal_error(&path, e))?;
                max_seq = max_seq.max(seq);
                let key = (Reverse(message.props.priority), seq);
                state.ready.insert(
                    key,
                    Pending {
                        seq,
                        message,
                        redelivered: false,
                    },
                );
            }
        }
        self.inner.next_seq.store(max_seq + 1, Ordering::SeqCst);
        Ok(())
    }
}

fn journal_error(path: &Path, error: impl std::fmt::Display) -> QueueError {
    QueueError::Journal {
        path: path.display().to_string(),
        detail: error.to_string(),
    }
}

/// Queue names become directory names in the journal: keep them to a safe alphabet.
fn check_queue_name(name: &str) -> Result<(), QueueError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if valid {
        Ok(())
    } else {
        Err(QueueError::Backend {
            backend: "memory",
            operation: "declare",
            queue: name.to_string(),
            detail: "queue names use ASCII letters, digits, '.', '-', '_' and ':'".to_string(),
        })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, QueueState>> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn journal_path(&self, queue: &str, seq: u64) -> Option<PathBuf> {
        self.journal
            .as_ref()
            .map(|dir| dir.join(queue).join(format!("{seq:020}.msg")))
    }

    fn write_journal(&self, queue: &str, seq: u64, message: &Message) -> Result<(), QueueError> {
        let Some(path) = self.journal_path(queue, seq) else {
            return Ok(());
        };
        let encoded = bincode::serde::encode_to_vec(message, bincode::config::standard())
            .map_err(|e| journal_error(&path, e))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| journal_error(parent, e))?;
        }
        let staged = path.with_extension("tmp");
        std::fs::write(&staged, encoded).map_err(|e| journal_error(&staged, e))?;
        std::fs::rename(&staged, &path).map_err(|e| journal_error(&path, e))
    }

    fn remove_journal(&self, queue: &str, seq: u64) {
        if let Some(path) = self.journal_path(queue, seq) {
            if let Err(error) = std::fs::remove_file(&path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %error, "could not remove a settled message's journal file");
                }
            }
        }
    }

    /// Adds a message to a queue (journal first: publish returns only once the message is durable).
    fn enqueue(&self, queue: &str, mut message: Message) -> Result<(), QueueError> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        if message.props.timestamp_ms.is_none() {
            message.props.timestamp_ms = Some(now_ms());
        }
        // Refused before anything is journalled: a publish to a missing queue leaves no file behind.
        if !self.lock().contains_key(queue) {
            return Err(QueueError::NoSuchQueue {
                queue: queue.to_string(),
            });
        }
        self.write_journal(queue, seq, &message)?;
        {
            let mut queues = self.lock();
            let state = queues
                .get_mut(queue)
                .ok_or_else(|| QueueError::NoSuchQueue {
                    queue: queue.to_string(),
                })?;
            let priority = message.props.priority.min(state.max_priority);
            state.ready.insert(
                (Reverse(priority), seq),
                Pending {
                    seq,
                    message,
                    redelivered: false,
                },
            );
        }
        self.changed.notify_waiters();
        Ok(())
    }

    fn take_unacked(&self, queue: &str, seq: u64) -> Option<Pending> {
        self.lock()
            .get_mut(queue)
            .and_then(|state| state.unacked.remove(&seq))
            .map(|(pending, _)| pending)
    }

    fn put_back(&self, queue: &str, mut pending: Pending) {
        pending.redelivered = true;
        if let Some(state) = self.lock().get_mut(queue) {
            let priority = pending.message.props.priority.min(state.max_priority);
            state
                .ready
                .insert((Reverse(priority), pending.seq), pending);
        }
        self.changed.notify_waiters();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct MemorySettle {
    inner: Arc<Inner>,
    queue: String,
    seq: u64,
}

fn stale(queue: &str) -> QueueError {
    QueueError::ConsumerClosed {
        queue: queue.to_string(),
    }
}

#[async_trait]
impl Settle for MemorySettle {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.inner
            .take_unacked(&self.queue, self.seq)
            .ok_or_else(|| stale(&self.queue))?;
        self.inner.remove_journal(&self.queue, self.seq);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn requeue(self: Box<Self>) -> Result<(), QueueError> {
        let pending = self
            .inner
            .take_unacked(&self.queue, self.seq)
            .ok_or_else(|| stale(&self.queue))?;
        self.inner.put_back(&self.queue, pending);
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, reason: &str, detail: &str) -> Result<(), QueueError> {
        let pending = self
            .inner
            .take_unacked(&self.queue, self.seq)
            .ok_or_else(|| stale(&self.queue))?;
        let message = pending
            .message
            .clone()
            .with_header(DEAD_REASON_HEADER, reason)
            .with_header(DEAD_DETAIL_HEADER, detail)
            .with_header(ORIGIN_QUEUE_HEADER, self.queue.clone());
        if let Err(error) = self.inner.enqueue(&dead_queue_name(&self.queue), message) {
            self.inner.put_back(&self.queue, pending);
            return Err(error);
        }
        self.inner.remove_journal(&self.queue, self.seq);
        self.inner.changed.notify_waiters();
        Ok(())
    }
}

struct MemoryConsumer {
    inner: Arc<Inner>,
    queue: String,
    id: u64,
    prefetch: usize,
}

impl MemoryConsumer {
    fn try_take(&self) -> Result<Option<Delivery>, QueueError> {
        let mut queues = self.inner.lock();
        let state = queues
            .get_mut(&self.queue)
            .ok_or_else(|| QueueError::NoSuchQueue {
                queue: self.queue.clone(),
            })?;
        let held = state
            .unacked
            .values()
            .filter(|(_, owner)| *owner == self.id)
            .count();
        if held >= self.prefetch {
            return Ok(None);
        }
        let Some((_, pending)) = state.ready.pop_first() else {
            return Ok(None);
        };
        state
            .unacked
            .insert(pending.seq, (pending.clone(), self.id));
        let settle = MemorySettle {
            inner: self.inner.clone(),
            queue: self.queue.clone(),
            seq: pending.seq,
        };
        Ok(Some(Delivery::new(
            self.queue.clone(),
            pending.message,
            pending.redelivered,
            Box::new(settle),
        )))
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(delivery) = self.try_take()? {
                return Ok(delivery);
            }
            changed.await;
        }
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        // Like a closed AMQP channel: whatever this consumer held goes back, marked redelivered.
        {
            let mut queues = self.inner.lock();
            if let Some(state) = queues.get_mut(&self.queue) {
                let held: Vec<u64> = state
                    .unacked
                    .iter()
                    .filter(|(_, (_, owner))| *owner == self.id)
                    .map(|(seq, _)| *seq)
                    .collect();
                for seq in held {
                    if let Some((mut pending, _)) = state.unacked.remove(&seq) {
                        pending.redelivered = true;
                        let priority = pending.message.props.priority.min(state.max_priority);
                        state.ready.insert((Reverse(priority), seq), pending);
                    }
                }
            }
        }
        self.inner.changed.notify_waiters();
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        check_queue_name(&spec.name)?;
        let mut queues = self.inner.lock();
        queues.entry(spec.name.clone()).or_default().max_priority = spec.max_priority;
        queues.entry(dead_queue_name(&spec.name)).or_default();
        Ok(())
    }

    async fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        self.inner.enqueue(queue, message)
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        if !self.inner.lock().contains_key(queue) {
            return Err(QueueError::NoSuchQueue {
                queue: queue.to_string(),
            });
        }
        Ok(Box::new(MemoryConsumer {
            inner: self.inner.clone(),
            queue: queue.to_string(),
            id: self.inner.next_consumer.fetch_add(1, Ordering::SeqCst),
            prefetch: usize::from(prefetch.max(1)),
        }))
    }

    async fn claim(&self, name: &str) -> Result<bool, QueueError> {
        let mut claims = self.claims();
        let holder = *claims.entry(name.to_string()).or_insert(self.connection);
        Ok(holder == self.connection)
    }

    async fn release_claim(&self, name: &str) -> Result<(), QueueError> {
        let mut claims = self.claims();
        if claims.get(name) == Some(&self.connection) {
            claims.remove(name);
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        self.inner
            .lock()
            .get(queue)
            .map(|state| state.ready.len() as u64)
            .ok_or_else(|| QueueError::NoSuchQueue {
                queue: queue.to_string(),
            })
    }

    async fn delete(&self, queue: &str) -> Result<(), QueueError> {
        for name in [queue.to_string(), dead_queue_name(queue)] {
            self.inner.lock().remove(&name);
            if let Some(dir) = &self.inner.journal {
                let path = dir.join(&name);
                if path.exists() {
                    std::fs::remove_dir_all(&path).map_err(|e| journal_error(&path, e))?;
                }
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
