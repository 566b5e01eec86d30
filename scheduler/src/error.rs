//! The scheduler's one error type. Rejections of a request (bad input, no consent, quota) are not errors
//! of the scheduler: they are reasons (`replies::Reason`) sent back to the requester.

use reverie_shared::envelope::EnvelopeError;
use reverie_shared::ids::InvalidId;
use reverie_shared::ports::cache::CacheError;
use reverie_shared::ports::queue::QueueError;
use reverie_shared::ports::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Destination(#[from] reverie_shared::destinations::DestinationError),
    #[error(transparent)]
    Id(#[from] InvalidId),
    #[error("stored record {key}: {detail}")]
    CorruptRecord { key: String, detail: String },
    #[error("could not encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
    #[error("tenant {0} does not exist")]
    UnknownTenant(String),
    #[error("tenant {0} already exists")]
    TenantExists(String),
    #[error("request {0} not found")]
    UnknownRequest(String),
    #[error("HTTP server: {0}")]
    Http(String),
    #[error(transparent)]
    Backends(#[from] reverie_shared::backends::BackendError),
    #[error("{0}")]
    Unavailable(String),
    #[error("another scheduler took over this farm's claim {claim}; this one stopped (it restarts as a standby)")]
    Displaced { claim: String },
    #[error("scheduler API at {address}: {detail}")]
    Client { address: String, detail: String },
}

pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;

impl SchedulerError {
    /// A failure no retry can change: the store refuses (access denied, a missing bucket). Work that
    /// failed this way is given up with the reason instead of being requeued forever.
    pub fn is_permanent(&self) -> bool {
        match self {
            SchedulerError::Store(error)
            | SchedulerError::Destination(reverie_shared::destinations::DestinationError::Store(
                error,
            )) => error.is_permanent(),
            _ => false,
        }
    }
}

/// Serialises a record as compact JSON (records are written on every request's hot path; `jq` makes
/// them readable), naming it on failure.
pub(crate) fn to_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| SchedulerError::Encode {
        what,
        detail: e.to_string(),
    })
}

/// Parses a stored JSON record, naming the key on failure.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| SchedulerError::CorruptRecord {
        key: key.to_string(),
        detail: e.to_string(),
    })
}
