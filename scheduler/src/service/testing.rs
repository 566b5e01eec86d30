//! What the parts' own tests build on: the embedded adapters (in memory and a temporary directory) and
//! planned request records, so each part is tested alone without RabbitMQ, Redis or S3.

use std::sync::Arc;

use chrono::Utc;
use reverie_shared::backends::Backends;
use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::jobs::Priority;
use reverie_shared::ports::cache::MemoryCache;
use reverie_shared::ports::queue::MemoryQueue;
use reverie_shared::ports::store::LocalStore;
use reverie_shared::queues::QueueNames;

use crate::plan::{self, PlanInput, PlannerSettings};
use crate::records::{Ingress, JobRecord, Records, RequestRecord};

/// The embedded backends, kept alive with their directory.
pub struct Embedded {
    pub backends: Backends,
    pub queues: QueueNames,
    pub records: Records,
    _dir: tempfile::TempDir,
}

pub async fn embedded() -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        queue: Arc::new(MemoryQueue::ephemeral()),
        cache: Arc::new(MemoryCache::ephemeral(1 << 24)),
        store: Arc::new(LocalStore::open(dir.path()).unwrap()),
    };
    let queues = QueueNames::new("parttest");
    for spec in queues.specs() {
        backends.queue.declare(&spec).await.unwrap();
    }
    let records = Records::new(backends.store.clone(), backends.cache.clone());
    Embedded {
        backends,
        queues,
        records,
        _dir: dir,
    }
}

pub fn ids(tenant: &str, request: &str) -> (TenantId, RequestId) {
    (
        TenantId::new(tenant).unwrap(),
        RequestId::new(request).unwrap(),
    )
}

/// The plan input of a prompt without references: `variants` painterly jobs.
pub fn input(variants: u32, priority: Priority) -> PlanInput {
    PlanInput {
        model_prompt: "a quiet harbour".to_string(),
        variants,
        priority,
        ..PlanInput::default()
    }
}

/// An accepted request's record with `variants` jobs, none published yet.
pub fn record(tenant: &str, request: &str, variants: u32, priority: Priority) -> RequestRecord {
    let (tenant, request) = ids(tenant, request);
    let settings = PlannerSettings::default();
    let plan = plan::make_plan(&input(variants, priority), &request, &settings);
    let now = Utc::now();
    let jobs = plan::jobs_for(&plan, &tenant, &request, &settings)
        .into_iter()
        .map(|spec| JobRecord::new(spec, now))
        .collect();
    RequestRecord {
        request,
        tenant,
        ingress: Ingress::Http,
        created_at: now,
        updated_at: now,
        prompt: "a quiet harbour".to_string(),
        body: serde_json::Value::Null,
        parent: None,
        reply: None,
        plan,
        jobs,
        final_reply_sent: false,
    }
}
