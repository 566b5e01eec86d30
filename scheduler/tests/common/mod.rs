//! Real services for the scheduler's integration tests: RabbitMQ, Redis and an S3-compatible server
//! (scripts/test starts them and exports their addresses). Each test gets its own queue prefix, bucket
//! and HTTP port, so tests run side by side on one broker.

#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reverie_scheduler::library::{catalog_key, CatalogFace, CatalogPhoto, TenantLibrary};
use reverie_scheduler::prompt::{CatalogPerson, CatalogPet, CatalogPlace, LibraryCatalog};
use reverie_scheduler::replies::Reply;
use reverie_scheduler::{Scheduler, SchedulerOptions};
use reverie_shared::backends::Backends;
use reverie_shared::envelope;
use reverie_shared::ids::{PhotoId, ShardId, TenantId};
use reverie_shared::jobs::{Job, JobEvent, JobSpec};
use reverie_shared::keys;
use reverie_shared::ports::cache::{RedisCache, SharedCache};
use reverie_shared::ports::queue::{
    AmqpQueue, Consumer, Message, MessageProps, QueueSpec, SharedQueue,
};
use reverie_shared::ports::store::SharedStore;
use tokio::sync::watch;

/// The broker user the tests connect as (RabbitMQ validates `user_id` against it).
pub fn amqp_user() -> String {
    let url = amqp_url();
    let after_scheme = url.split("://").nth(1).unwrap_or_default();
    after_scheme
        .split(['@', ':'])
        .next()
        .unwrap_or("guest")
        .to_string()
}

pub use reverie_shared::testing::{amqp_url, redis_url, unique};

pub async fn backends() -> Backends {
    let queue: SharedQueue = Arc::new(AmqpQueue::connect(&amqp_url()).await.unwrap_or_else(|e| {
        panic!(
            "RabbitMQ at {} is not reachable (run scripts/test): {e}",
            amqp_url()
        )
    }));
    let cache: SharedCache =
        Arc::new(RedisCache::connect(&redis_url()).await.unwrap_or_else(|e| {
            panic!(
                "Redis at {} is not reachable (run scripts/test): {e}",
                redis_url()
            )
        }));
    let s3 = reverie_shared::testing::s3_store("sched-test").await;
    let store: SharedStore = Arc::new(s3);
    Backends {
        queue,
        cache,
        store,
    }
}

/// RabbitMQ and Redis, with the embedded store in a fresh directory (for tests that need no S3 server).
pub async fn local_backends() -> Backends {
    let real_queue: SharedQueue = Arc::new(
        AmqpQueue::connect(&amqp_url())
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ at {} is not reachable: {e}", amqp_url())),
    );
    let cache: SharedCache = Arc::new(
        RedisCache::connect(&redis_url())
            .await
            .unwrap_or_else(|e| panic!("Redis at {} is not reachable: {e}", redis_url())),
    );
    let root = std::env::temp_dir().join(unique("sched-local-store"));
    std::fs::create_dir_all(&root).unwrap();
    let store: SharedStore =
        Arc::new(reverie_shared::ports::store::LocalStore::open(root).unwrap());
    Backends {
        queue: real_queue,
        cache,
        store,
    }
}

/// The metric text a scheduler in this process exposes (`/metrics`), for counters a test expects to move.
pub fn metric_value(name: &str, label: &str) -> f64 {
    reverie_shared::metrics::global()
        .render()
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A scheduler running against the real services, with its HTTP address.
pub struct Farm {
    pub backends: Backends,
    pub options: SchedulerOptions,
    pub http: SocketAddr,
    pub core: reverie_scheduler::Core,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Farm {
    pub async fn start(options: SchedulerOptions) -> Farm {
        Farm::start_on(backends().await, options).await
    }

    pub async fn start_on(backends: Backends, mut options: SchedulerOptions) -> Farm {
        if options.queue_prefix == "reverie" {
            options.queue_prefix = unique("schedtest");
        }
        options.http_addr = "127.0.0.1:0".parse().unwrap();
        options.metrics_interval = Duration::from_millis(200);
        let scheduler = Scheduler::new(backends.clone(), options.clone());
        let core = scheduler.core().clone();
        let (stop, shutdown) = watch::channel(false);
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            if let Err(error) = scheduler.run(shutdown, Some(bound_tx)).await {
                panic!("scheduler stopped: {error}");
            }
        });
        let http = tokio::time::timeout(Duration::from_secs(30), bound_rx)
            .await
            .expect("scheduler listens within 30 s")
            .expect("scheduler started");
        Farm {
            backends,
            options,
            http,
            core,
            stop,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn queues(&self) -> &reverie_shared::queues::QueueNames {
        self.core.queues()
    }

    /// Stops the scheduler (its queues stay, for restart tests).
    pub async fn stop(self) -> Backends {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.backends
    }

    /// Creates a tenant with consent for its whole library and returns a token.
    pub async fn tenant(&self, name: &str, consent: bool) -> (TenantId, String) {
        let tenant = TenantId::new(name).unwrap();
        self.core.tenants().create(&tenant).await.unwrap();
        if consent {
            self.core
                .tenants()
                .set_consent(&tenant, "library", true)
                .await
                .unwrap();
        }
        let token = self
            .core
            .tenants()
            .issue_token(&tenant, None, None)
            .await
            .unwrap();
        (tenant, token)
    }

    /// Publishes a JSON request the way another service would, with a fresh reply queue.
    pub async fn publish_request(
        &self,
        body: &[u8],
        message_id: Option<&str>,
        token: Option<&str>,
        reply_to: &str,
    ) {
        self.publish_request_as(body, message_id, token, None, reply_to)
            .await;
    }

    /// Publishes with the AMQP `user_id` property, which RabbitMQ checks against the connection's user.
    pub async fn publish_request_as(
        &self,
        body: &[u8],
        message_id: Option<&str>,
        token: Option<&str>,
        user_id: Option<&str>,
        reply_to: &str,
    ) {
        let mut props = MessageProps {
            user_id: user_id.map(str::to_string),
            message_id: message_id.map(str::to_string),
            correlation_id: Some(unique("corr")),
            reply_to: Some(reply_to.to_string()),
            content_type: Some("application/json".into()),
            ..MessageProps::default()
        };
        if let Some(token) = token {
            props.headers.insert("x-reverie-token".into(), token.into());
        }
        self.publish_request_with(body, props).await;
    }

    /// Publishes a request with exactly these properties (headers included).
    pub async fn publish_request_with(&self, body: &[u8], props: MessageProps) {
        self.backends
            .queue
            .publish(
                &self.queues().requests,
                Message::new(body.to_vec()).with_props(props),
            )
            .await
            .unwrap();
    }

    /// A fresh reply queue and a consumer on it.
    pub async fn reply_queue(&self) -> (String, Box<dyn Consumer>) {
        let name = unique(&format!("{}.replies", self.options.queue_prefix));
        self.declared_reply_queue(name).await
    }

    /// The name of a reply queue of `tenant` (docs/api.md: `{prefix}.reply.{tenant}:{anything}`).
    pub fn reply_queue_name(&self, tenant: &TenantId, suffix: &str) -> String {
        format!(
            "{}.reply.{tenant}:{}",
            self.options.queue_prefix,
            unique(suffix)
        )
    }

    /// A fresh reply queue of `tenant` and a consumer on it.
    pub async fn reply_queue_for(&self, tenant: &TenantId) -> (String, Box<dyn Consumer>) {
        let name = self.reply_queue_name(tenant, "replies");
        self.declared_reply_queue(name).await
    }

    async fn declared_reply_queue(&self, name: String) -> (String, Box<dyn Consumer>) {
        self.backends
            .queue
            .declare(&QueueSpec::new(&name))
            .await
            .unwrap();
        let consumer = self.backends.queue.consume(&name, 32).await.unwrap();
        (name, consumer)
    }

    pub async fn cleanup(self) {
        let queues = self.queues().clone();
        let backends = self.stop().await;
        for name in [
            &queues.requests,
            &queues.generate,
            &queues.analyse,
            &queues.events,
        ] {
            let _ = backends.queue.delete(name).await;
        }
    }
}

/// The next reply on a reply queue, with its correlation id.
pub async fn next_reply(consumer: &mut Box<dyn Consumer>) -> (Reply, Option<String>) {
    let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("a reply within 20 s")
        .expect("reply consumer alive");
    let reply: Reply = serde_json::from_slice(delivery.body()).expect("reply is reply.v1 JSON");
    let correlation = delivery.props().correlation_id.clone();
    delivery.ack().await.unwrap();
    (reply, correlation)
}

/// Replies until one of kind `kind` arrives.
pub async fn reply_of_kind(consumer: &mut Box<dyn Consumer>, kind: &str) -> Reply {
    loop {
        let (reply, _) = next_reply(consumer).await;
        if reply.kind() == kind {
            return reply;
        }
        assert!(!reply.is_final(), "expected a {kind} reply, got {reply:?}");
    }
}

/// Plays a worker: takes the next job from the generate queue.
pub async fn take_job(
    consumer: &mut Box<dyn Consumer>,
) -> (Job, reverie_shared::ports::queue::Delivery) {
    let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("a job within 20 s")
        .expect("job consumer alive");
    let job = envelope::decode_job(delivery.body()).expect("job decodes");
    (job, delivery)
}

/// Plays a worker finishing a job: writes the outputs, publishes Started and Succeeded, acks.
pub async fn complete_job(
    farm: &Farm,
    job: &Job,
    delivery: reverie_shared::ports::queue::Delivery,
) -> Vec<String> {
    complete_job_on(&farm.backends, farm.queues(), job, delivery).await
}

/// [`complete_job`] against any backends and queue names (a scheduler not started as a [`Farm`]).
pub async fn complete_job_on(
    backends: &Backends,
    queues: &reverie_shared::queues::QueueNames,
    job: &Job,
    delivery: reverie_shared::ports::queue::Delivery,
) -> Vec<String> {
    let JobSpec::Generate(spec) = &job.spec else {
        panic!("generate job expected")
    };
    publish_event_on(
        backends,
        queues,
        &JobEvent::Started {
            job: spec.job.clone(),
            tenant: spec.tenant.clone(),
            worker: "test-worker".into(),
            attempt: job.attempt,
        },
    )
    .await;
    let image = keys::result_image(&spec.tenant, &spec.request, spec.index);
    let provenance = keys::result_provenance(&spec.tenant, &spec.request, spec.index);
    backends
        .store
        .put(&image, Bytes::from_static(b"\x89PNG test"))
        .await
        .unwrap();
    backends
        .store
        .put(&provenance, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let outputs = vec![image, provenance];
    publish_event_on(
        backends,
        queues,
        &JobEvent::Succeeded {
            job: spec.job.clone(),
            tenant: spec.tenant.clone(),
            outputs: outputs.clone(),
            render_ms: 5,
            identity: None,
        },
    )
    .await;
    delivery.ack().await.unwrap();
    outputs
}

pub async fn publish_event(farm: &Farm, event: &JobEvent) {
    publish_event_on(&farm.backends, farm.queues(), event).await;
}

pub async fn publish_event_on(
    backends: &Backends,
    queues: &reverie_shared::queues::QueueNames,
    event: &JobEvent,
) {
    let body = envelope::encode_events(std::slice::from_ref(event)).unwrap();
    backends
        .queue
        .publish(&queues.events, Message::new(body))
        .await
        .unwrap();
}

fn photo(byte: u8) -> PhotoId {
    PhotoId::of_bytes(&[byte])
}

pub fn anna_face_photo() -> PhotoId {
    photo(1)
}

/// A small library: Anna (the tenant), her dog Rex, Lisbon at sunset, an album "Italy 2023".
pub fn test_library() -> TenantLibrary {
    let shard = ShardId::new("s-0001").unwrap();
    let catalog = LibraryCatalog {
        people: vec![
            CatalogPerson {
                id: "p-anna".into(),
                name: "Anna".into(),
                aliases: vec!["my wife".into()],
                is_self: true,
            },
            CatalogPerson {
                id: "p-ben".into(),
                name: "Ben".into(),
                aliases: vec![],
                is_self: false,
            },
        ],
        pets: vec![CatalogPet {
            id: "pet-rex".into(),
            name: "Rex".into(),
            kind: "dog".into(),
            aliases: vec![],
        }],
        places: vec![CatalogPlace {
            id: "pl-lisbon".into(),
            name: "Lisbon".into(),
            aliases: vec!["Lisboa".into()],
            photo_count: 2,
        }],
        albums: vec!["Italy 2023".into()],
        keywords: vec!["beach".into()],
        titles: vec![],
        descriptions: vec![],
        light_tags: vec!["sunset".into(), "night".into()],
        scene_tags: vec!["beach".into()],
        photo_count: 4,
    };
    let photo_at = |byte: u8, offset: u64| CatalogPhoto {
        photo: photo(byte),
        shard: shard.clone(),
        offset,
        length: 1000,
        albums: vec![],
        place: None,
        light: vec![],
        scenes: vec![],
        keywords: vec![],
        faces: vec![],
        pets: vec![],
        colourfulness: 0.5,
        close_up: false,
    };
    let mut anna = photo_at(1, 0);
    anna.faces.push(CatalogFace {
        person: "p-anna".into(),
        face_box: [10, 10, 300, 300],
        sharpness: 0.9,
        frontal: 0.9,
    });
    let mut anna_blurry = photo_at(2, 1000);
    anna_blurry.faces.push(CatalogFace {
        person: "p-anna".into(),
        face_box: [10, 10, 60, 60],
        sharpness: 0.2,
        frontal: 0.5,
    });
    anna_blurry.albums.push("Italy 2023".into());
    let mut lisbon = photo_at(3, 2000);
    lisbon.place = Some("pl-lisbon".into());
    lisbon.light.push("sunset".into());
    let mut rex = photo_at(4, 3000);
    rex.pets.push("pet-rex".into());
    rex.albums.push("Italy 2023".into());
    TenantLibrary {
        catalog,
        photos: vec![anna, anna_blurry, lisbon, rex],
        palettes: Default::default(),
        loras: Vec::new(),
    }
}

pub async fn seed_library(farm: &Farm, tenant: &TenantId, library: &TenantLibrary) {
    farm.backends
        .store
        .put(
            &catalog_key(tenant),
            Bytes::from(serde_json::to_vec(library).unwrap()),
        )
        .await
        .unwrap();
}

/// A schema v1 request body for `tenant`.
pub fn request_for(tenant: &TenantId, prompt: &str, n: u32, priority: &str) -> serde_json::Value {
    serde_json::json!({
        "schema_version": 1,
        "tenant": tenant.as_str(),
        "prompt": prompt,
        "n": n,
        "priority": priority,
        "kind": "generate"
    })
}
