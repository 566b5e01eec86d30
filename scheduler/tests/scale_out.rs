//! Schedulers that share the farm (`scheduler.shards` > 1), against real RabbitMQ, Redis and S3:
//! several schedulers active at once, each holding some of the tenant shards; requests sent to any of
//! them over HTTP or AMQP; one killed (its runtime stopped and its broker connection dropped, as a
//! `kill -9` looks to the broker and the store), one added under load, one cut off from the broker.
//! Every accepted request finishes exactly once, no shard is ever held by two schedulers, and every
//! job names the events queue of its tenant's shard.
//!
//! Each scheduler runs in a tokio runtime of its own with its own clients, as a separate process
//! would, so that stopping the runtime stops everything it was doing at once.

// Tenants are numbered; the loops index several per-tenant lists by that number.
#![allow(clippy::needless_range_loop)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use reverie_scheduler::client::ApiClient;
use reverie_scheduler::library::catalog_key;
use reverie_scheduler::records::JobState;
use reverie_scheduler::replies::Reply;
use reverie_scheduler::shards::membership::Member;
use reverie_scheduler::{Scheduler, SchedulerOptions};
use reverie_shared::backends::Backends;
use reverie_shared::envelope;
use reverie_shared::ids::TenantId;
use reverie_shared::jobs::{JobEvent, JobSpec, Priority};
use reverie_shared::keys;
use reverie_shared::ports::cache::{RedisCache, SharedCache};
use reverie_shared::ports::queue::{AmqpQueue, Message, MessageProps, QueueSpec, SharedQueue};
use reverie_shared::ports::store::{S3Store, SharedStore};
use reverie_shared::queues::{shard_of, QueueNames, EVENTS_HEADER};
use tokio::sync::watch;

const SHARDS: u16 = 8;

/// One scheduler "process".
struct SchedulerProcess {
    address: SocketAddr,
    queue: AmqpQueue,
    stop: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl SchedulerProcess {
    async fn start(prefix: &str, bucket: &str) -> SchedulerProcess {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let queue = AmqpQueue::connect(&amqp_url()).await.unwrap();
        let options = SchedulerOptions {
            queue_prefix: prefix.to_string(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            shards: SHARDS,
            metrics_interval: Duration::from_millis(500),
            ..SchedulerOptions::default()
        };
        let (stop, shutdown) = watch::channel(false);
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (member_queue, bucket) = (queue.clone(), bucket.to_string());
        runtime.spawn(async move {
            let cache: SharedCache = Arc::new(RedisCache::connect(&redis_url()).await.unwrap());
            let store: SharedStore =
                Arc::new(S3Store::connect(reverie_shared::testing::s3_config(&bucket)).await);
            let backends = Backends {
                queue: Arc::new(member_queue) as SharedQueue,
                cache,
                store,
            };
            let result = Scheduler::new(backends, options)
                .run(shutdown, Some(bound_tx))
                .await;
            assert!(result.is_ok(), "scheduler stopped: {result:?}");
            let _ = done_tx.send(());
        });
        let address = tokio::time::timeout(Duration::from_secs(30), bound_rx)
            .await
            .expect("a scheduler joins within 30 s")
            .expect("scheduler started");
        SchedulerProcess {
            address,
            queue,
            stop,
            runtime: Some(runtime),
            done,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// As `kill -9` looks from outside: everything the process was doing stops at once and its
    /// broker connection closes without releasing anything.
    async fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        self.queue.drop_connection().await;
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.done).await;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The heartbeat watcher of [`Bench::watch_exclusive`].
struct Watcher {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<usize>,
}

impl Watcher {
    /// Stops watching; the watcher must have seen the heartbeats (and no shard held twice).
    async fn stop(self) {
        let _ = self.stop.send(true);
        assert!(
            self.task.await.unwrap() > 0,
            "the watcher never read the heartbeats"
        );
    }
}

/// The test's side of the farm: shared clients, tenants, a worker, and what it saw.
struct Bench {
    prefix: String,
    queues: QueueNames,
    backends: Backends,
    bucket: String,
    tenants: Vec<(TenantId, String)>,
    /// Jobs the test worker ran, by job id (a count above one is a job run twice).
    runs: Arc<Mutex<BTreeMap<String, u32>>>,
    /// Jobs whose events header did not name their tenant's shard.
    misrouted: Arc<Mutex<Vec<String>>>,
    /// Per tenant: batch jobs delivered and not yet finished, now and at the most.
    batch_in_flight: Arc<Mutex<HashMap<String, (usize, usize)>>>,
}

impl Bench {
    async fn new(tenants: usize) -> Bench {
        let prefix = unique("scaleout");
        let bucket = unique("scaleout");
        let store = S3Store::connect(reverie_shared::testing::s3_config(&bucket)).await;
        store.ensure_bucket().await.unwrap();
        let backends = Backends {
            queue: Arc::new(AmqpQueue::connect(&amqp_url()).await.unwrap()),
            cache: Arc::new(RedisCache::connect(&redis_url()).await.unwrap()),
            store: Arc::new(store),
        };
        let queues = QueueNames::new(&prefix);
        for spec in queues.specs() {
            backends.queue.declare(&spec).await.unwrap();
        }
        let admin = reverie_scheduler::tenants::Tenants::new(
            backends.store.clone(),
            backends.cache.clone(),
        );
        let mut made = Vec::new();
        for i in 0..tenants {
            let tenant = TenantId::new(unique(&format!("t{i}"))).unwrap();
            admin.create(&tenant).await.unwrap();
            admin.set_consent(&tenant, "library", true).await.unwrap();
            let token = admin.issue_token(&tenant, None, None).await.unwrap();
            backends
                .store
                .put(
                    &catalog_key(&tenant),
                    Bytes::from(serde_json::to_vec(&test_library()).unwrap()),
                )
                .await
                .unwrap();
            made.push((tenant, token));
        }
        Bench {
            prefix,
            queues,
            backends,
            bucket,
            tenants: made,
            runs: Arc::default(),
            misrouted: Arc::default(),
            batch_in_flight: Arc::default(),
        }
    }

    async fn member(&self) -> SchedulerProcess {
        SchedulerProcess::start(&self.prefix, &self.bucket).await
    }

    /// The members' heartbeats as the cache holds them.
    async fn members(&self) -> Vec<Member> {
        let prefix = keys::scheduler_member_key(&self.prefix, "");
        let keys = self.backends.cache.keys(&prefix).await.unwrap();
        let values = self.backends.cache.get_many(&keys).await.unwrap();
        values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// Waits until `count` members hold every shard between them, none twice; returns how long it took.
    async fn until_balanced(&self, count: usize, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let members = self.members().await;
            let held: Vec<u16> = members.iter().flat_map(|m| m.shards.clone()).collect();
            let distinct: BTreeSet<u16> = held.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                held.len(),
                "a shard held twice: {members:?}"
            );
            if members.len() == count
                && distinct.len() == usize::from(SHARDS)
                && members.iter().all(|m| !m.shards.is_empty())
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "not balanced over {count} schedulers within {within:?}: {members:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Two schedulers, balanced.
    async fn two_schedulers(&self) -> (SchedulerProcess, SchedulerProcess) {
        let first = self.member().await;
        let second = self.member().await;
        self.until_balanced(2, Duration::from_secs(20)).await;
        (first, second)
    }

    /// Samples the heartbeats every 50 ms until stopped; fails the test if a shard is ever listed by
    /// two members at once.
    fn watch_exclusive(&self) -> Watcher {
        let (stop, mut stopped) = watch::channel(false);
        let (cache, prefix) = (self.backends.cache.clone(), self.prefix.clone());
        let task = tokio::spawn(async move {
            let mut samples = 0;
            while !*stopped.borrow() {
                let key = keys::scheduler_member_key(&prefix, "");
                if let Ok(keys) = cache.keys(&key).await {
                    let values = cache.get_many(&keys).await.unwrap_or_default();
                    let members: Vec<Member> = values
                        .into_iter()
                        .flatten()
                        .filter_map(|v| serde_json::from_slice(&v).ok())
                        .collect();
                    let mut seen = HashMap::new();
                    for member in &members {
                        for shard in &member.shards {
                            if let Some(other) = seen.insert(*shard, member.id.clone()) {
                                panic!("shard {shard} held by {other} and {}", member.id);
                            }
                        }
                    }
                    samples += 1;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
            samples
        });
        Watcher { stop, task }
    }

    /// Plays the workers: runs every generate job (after `delay`), answering on the events queue
    /// its header names, and notes what it ran.
    fn worker(&self, delay: Duration) -> tokio::task::JoinHandle<()> {
        let (backends, queues) = (self.backends.clone(), self.queues.clone());
        let (runs, misrouted) = (self.runs.clone(), self.misrouted.clone());
        let in_flight = self.batch_in_flight.clone();
        tokio::spawn(async move {
            let mut consumer = backends.queue.consume(&queues.generate, 32).await.unwrap();
            while let Ok(delivery) = consumer.next().await {
                let job = envelope::decode_job(delivery.body()).unwrap();
                let JobSpec::Generate(spec) = job.spec.clone() else {
                    continue;
                };
                let expected = format!(
                    "{}.{}",
                    queues.events,
                    shard_of(spec.tenant.as_str(), SHARDS)
                );
                let events_queue = delivery.props().headers.get(EVENTS_HEADER).cloned();
                if events_queue.as_deref() != Some(expected.as_str()) {
                    misrouted
                        .lock()
                        .unwrap()
                        .push(format!("{}: {events_queue:?}", spec.job));
                }
                *runs
                    .lock()
                    .unwrap()
                    .entry(spec.job.to_string())
                    .or_default() += 1;
                let batch = job.priority == Priority::Batch;
                if batch {
                    let mut counts = in_flight.lock().unwrap();
                    let (now, most) = counts.entry(spec.tenant.to_string()).or_default();
                    *now += 1;
                    *most = (*most).max(*now);
                }
                let (backends, queues) = (backends.clone(), queues.clone());
                let in_flight = in_flight.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let image = keys::result_image(&spec.tenant, &spec.request, spec.index);
                    backends
                        .store
                        .put(&image, Bytes::from_static(b"\x89PNG test"))
                        .await
                        .unwrap();
                    let events = [
                        JobEvent::Started {
                            job: spec.job.clone(),
                            tenant: spec.tenant.clone(),
                            worker: "test-worker".into(),
                            attempt: job.attempt,
                        },
                        JobEvent::Succeeded {
                            job: spec.job.clone(),
                            tenant: spec.tenant.clone(),
                            outputs: vec![image],
                            render_ms: 1,
                            identity: None,
                        },
                    ];
                    let body = envelope::encode_events(&events).unwrap();
                    let queue = events_queue.unwrap_or(queues.events.clone());
                    if batch {
                        let mut counts = in_flight.lock().unwrap();
                        counts.entry(spec.tenant.to_string()).or_default().0 -= 1;
                    }
                    backends
                        .queue
                        .publish(&queue, Message::new(body))
                        .await
                        .unwrap();
                    delivery.ack().await.unwrap();
                });
            }
        })
    }

    /// A reply queue of `tenant` and a task counting the final replies on it by correlation id.
    async fn replies(&self, tenant: &TenantId) -> (String, Finals) {
        let name = format!("{}.reply.{tenant}:{}", self.prefix, unique("r"));
        self.backends
            .queue
            .declare(&QueueSpec::new(&name))
            .await
            .unwrap();
        let mut consumer = self.backends.queue.consume(&name, 64).await.unwrap();
        let finals: Finals = Arc::default();
        let seen = finals.clone();
        tokio::spawn(async move {
            while let Ok(delivery) = consumer.next().await {
                let reply: Reply = serde_json::from_slice(delivery.body()).unwrap();
                if reply.is_final() {
                    let correlation = delivery.props().correlation_id.clone().unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .entry(correlation)
                        .or_default()
                        .push(reply.kind().to_string());
                }
                let _ = delivery.ack().await;
            }
        });
        (name, finals)
    }

    /// A reply queue per tenant (index = tenant), each with its final replies as they come.
    async fn reply_queues(&self) -> Vec<(String, Finals)> {
        let mut queues = Vec::new();
        for (tenant, _) in &self.tenants {
            queues.push(self.replies(tenant).await);
        }
        queues
    }

    /// Publishes a batch request of `tenant` to the farm's shared requests queue, as another service does.
    async fn publish(&self, tenant: usize, key: &str, reply_to: &str) {
        self.publish_n(tenant, key, reply_to, 1).await
    }

    async fn publish_n(&self, tenant: usize, key: &str, reply_to: &str, n: u32) {
        let (tenant_id, token) = &self.tenants[tenant];
        let body = serde_json::to_vec(&request_for(tenant_id, "Rex", n, "batch")).unwrap();
        let mut props = MessageProps {
            message_id: Some(key.to_string()),
            correlation_id: Some(key.to_string()),
            reply_to: Some(reply_to.to_string()),
            content_type: Some("application/json".into()),
            ..MessageProps::default()
        };
        props
            .headers
            .insert("x-reverie-token".into(), token.clone());
        self.backends
            .queue
            .publish(&self.queues.requests, Message::new(body).with_props(props))
            .await
            .unwrap();
    }

    /// One request per tenant over AMQP (answered on its reply queue) and one over HTTP to `url`;
    /// their keys are added to `amqp_keys` and `http_keys`.
    async fn send_round(
        &self,
        reply_queues: &[(String, Finals)],
        url: &str,
        amqp_keys: &mut Vec<(usize, String)>,
        http_keys: &mut Vec<(usize, String)>,
    ) {
        for (tenant, (reply_to, _)) in reply_queues.iter().enumerate() {
            let key = unique(&format!("a{tenant}"));
            self.publish(tenant, &key, reply_to).await;
            amqp_keys.push((tenant, key));
            let key = unique(&format!("h{tenant}"));
            self.submit(url, tenant, &key).await;
            http_keys.push((tenant, key));
        }
    }

    /// Submits over HTTP to `url`, retrying while the tenant's shard is moving (503).
    async fn submit(&self, url: &str, tenant: usize, key: &str) {
        let (tenant_id, token) = &self.tenants[tenant];
        let client = ApiClient::new(url, token);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client
                .submit(&request_for(tenant_id, "Rex", 1, "interactive"), Some(key))
                .await
            {
                Ok(answer) if answer.status.is_success() => return,
                other => assert!(Instant::now() < deadline, "{key} not accepted: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every request in `keys` succeeded, asking `url` (which may forward).
    async fn until_all_succeeded(&self, url: &str, keys: &[(usize, String)]) {
        for (tenant, key) in keys {
            let client = ApiClient::new(url, &self.tenants[*tenant].1);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Ok(status)) = client.status(key).await {
                    if status.state == JobState::Succeeded {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "{key} did not succeed within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// After a take-over a job may run again (the broker redelivers what was unacked, recovery
    /// republishes what was not recorded as published): at-least-once for the work, exactly once for
    /// the answer. Only the routing of every job is checked.
    fn assert_each_job_was_routed_allowing_reruns(&self) {
        let reruns: BTreeSet<String> = self.runs.lock().unwrap().keys().cloned().collect();
        self.assert_each_job_ran_once_and_was_routed(&reruns);
    }

    fn assert_each_job_ran_once_and_was_routed(&self, allowed_reruns: &BTreeSet<String>) {
        let misrouted = self.misrouted.lock().unwrap().clone();
        assert!(
            misrouted.is_empty(),
            "jobs naming another shard's events queue: {misrouted:?}"
        );
        let twice: Vec<(String, u32)> = self
            .runs
            .lock()
            .unwrap()
            .iter()
            .filter(|(job, runs)| **runs > 1 && !allowed_reruns.contains(*job))
            .map(|(job, runs)| (job.clone(), *runs))
            .collect();
        assert!(twice.is_empty(), "jobs run more than once: {twice:?}");
    }

    async fn cleanup(self) {
        for index in 0..SHARDS {
            for spec in self.queues.shard(index, SHARDS).specs() {
                let _ = self.backends.queue.delete(&spec.name).await;
            }
        }
        for spec in self.queues.specs() {
            let _ = self.backends.queue.delete(&spec.name).await;
        }
    }
}

/// The whole body of a request's event stream (it ends after the final reply).
async fn events_body(url: &str, token: &str, request: &str) -> String {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let request = hyper::Request::get(format!("{url}/v1/generations/{request}/events"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("the stream answers within 20 s")
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect())
        .await
        .expect("the stream ends within 20 s")
        .unwrap();
    String::from_utf8_lossy(&body.to_bytes()).into_owned()
}

/// Final replies by correlation id, as a reply queue's consumer saw them.
type Finals = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// Waits for the final replies of every AMQP request in `keys` (tenant, key) on its tenant's reply
/// queue, then checks each got exactly one, `done`.
async fn assert_each_answered_once(reply_queues: &[(String, Finals)], keys: &[(usize, String)]) {
    for (tenant, (_, finals)) in reply_queues.iter().enumerate() {
        let keys: Vec<String> = keys
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, k)| k.clone())
            .collect();
        until_answered(finals, &keys).await;
        assert_answered_once(&finals.lock().unwrap(), &keys);
    }
}

/// Every AMQP request got exactly one final reply, and it is `done` (succeeded).
fn assert_answered_once(finals: &BTreeMap<String, Vec<String>>, keys: &[String]) {
    for key in keys {
        let got = finals.get(key).cloned().unwrap_or_default();
        assert_eq!(got, vec!["done".to_string()], "final replies of {key}");
    }
}

async fn until_answered(finals: &Finals, keys: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while keys
        .iter()
        .any(|key| !finals.lock().unwrap().contains_key(key))
    {
        assert!(
            Instant::now() < deadline,
            "AMQP requests not all answered within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second final reply, if one were coming, would come about now.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_schedulers_share_the_tenants_and_answer_every_request_once_wherever_it_arrives() {
    let bench = Bench::new(6).await;
    let members = [
        bench.member().await,
        bench.member().await,
        bench.member().await,
    ];
    bench.until_balanced(3, Duration::from_secs(20)).await;
    let watching = bench.watch_exclusive();
    let worker = bench.worker(Duration::from_millis(150));

    // The tenants are spread: not every tenant's shard is on one scheduler.
    let heartbeats = bench.members().await;
    let owners: BTreeSet<String> = bench
        .tenants
        .iter()
        .filter_map(|(tenant, _)| {
            let shard = shard_of(tenant.as_str(), SHARDS);
            heartbeats
                .iter()
                .find(|m| m.shards.contains(&shard))
                .map(|m| m.id.clone())
        })
        .collect();
    assert!(
        owners.len() >= 2,
        "six tenants on one scheduler: {owners:?}"
    );

    // HTTP to every scheduler for every tenant (most are forwarded), AMQP on the shared queue.
    let mut http_keys = Vec::new();
    for round in 0..2 {
        for tenant in 0..bench.tenants.len() {
            let member = &members[(tenant + round) % members.len()];
            let key = unique(&format!("h{tenant}"));
            bench.submit(&member.url(), tenant, &key).await;
            http_keys.push((tenant, key));
        }
    }
    let mut amqp_keys = Vec::new();
    let mut all_finals = Vec::new();
    for tenant in 0..bench.tenants.len() {
        let (reply_to, finals) = bench.replies(&bench.tenants[tenant].0).await;
        let mut keys = Vec::new();
        if tenant == 0 {
            // A big batch: the fairness feeder of its shard's scheduler keeps at most
            // `batch_in_flight_per_tenant` of its jobs on the broker at once.
            let key = unique("big");
            bench.publish_n(tenant, &key, &reply_to, 12).await;
            keys.push(key.clone());
            amqp_keys.push((tenant, key));
        }
        for _ in 0..3 {
            let key = unique(&format!("a{tenant}"));
            bench.publish(tenant, &key, &reply_to).await;
            keys.push(key.clone());
            amqp_keys.push((tenant, key));
        }
        all_finals.push((finals, keys));
    }
    bench
        .until_all_succeeded(&members[0].url(), &http_keys)
        .await;
    bench
        .until_all_succeeded(&members[1].url(), &amqp_keys)
        .await;
    for (finals, keys) in &all_finals {
        until_answered(finals, keys).await;
        assert_answered_once(&finals.lock().unwrap(), keys);
    }
    bench.assert_each_job_ran_once_and_was_routed(&BTreeSet::new());
    let bound = SchedulerOptions::default().batch_in_flight_per_tenant;
    let most = bench.batch_in_flight.lock().unwrap()[bench.tenants[0].0.as_str()].1;
    eprintln!("the big batch had at most {most} jobs in flight at once (bound {bound})");
    assert!(
        (2..=bound).contains(&most),
        "the big batch had {most} jobs in flight at once (bound {bound})"
    );

    // An event stream followed through a scheduler that does not hold the tenant's shard (proxied,
    // streamed) ends with the request's final reply.
    let (tenant, key) = &http_keys[0];
    let shard = shard_of(bench.tenants[*tenant].0.as_str(), SHARDS);
    let holder = bench
        .members()
        .await
        .into_iter()
        .find(|m| m.shards.contains(&shard))
        .unwrap();
    let other = members.iter().find(|m| m.url() != holder.url).unwrap();
    let stream = events_body(&other.url(), &bench.tenants[*tenant].1, key).await;
    assert!(stream.contains("event: done"), "{stream}");

    watching.stop().await;
    worker.abort();
    for member in members {
        member.stop().await;
    }
    // Every scheduler released its shards on the way out and left the membership.
    assert!(bench.members().await.is_empty());
    bench.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_schedulers_tenants_are_taken_over_and_a_scheduler_added_under_load_takes_its_share(
) {
    let bench = Bench::new(6).await;
    let (first, second) = bench.two_schedulers().await;
    let watching = bench.watch_exclusive();
    // Jobs take a while, so the kill lands while requests of both schedulers are open.
    let worker = bench.worker(Duration::from_millis(1500));

    let finals_by_tenant = bench.reply_queues().await;
    let mut amqp_keys = Vec::new();
    let mut http_keys = Vec::new();
    bench
        .send_round(
            &finals_by_tenant,
            &second.url(),
            &mut amqp_keys,
            &mut http_keys,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // kill -9 of the first scheduler while its requests are open.
    first.kill().await;
    let took_over = bench.until_balanced(1, Duration::from_secs(20)).await;
    eprintln!("the survivor held every shard {took_over:?} after the kill");
    assert!(
        took_over < Duration::from_secs(10),
        "take-over took {took_over:?}"
    );

    // A scheduler added under load takes its share.
    let third = bench.member().await;
    bench
        .send_round(
            &finals_by_tenant,
            &third.url(),
            &mut amqp_keys,
            &mut http_keys,
        )
        .await;
    bench.until_balanced(2, Duration::from_secs(20)).await;

    bench.until_all_succeeded(&third.url(), &http_keys).await;
    bench.until_all_succeeded(&second.url(), &amqp_keys).await;
    assert_each_answered_once(&finals_by_tenant, &amqp_keys).await;
    bench.assert_each_job_was_routed_allowing_reruns();

    watching.stop().await;
    worker.abort();
    second.stop().await;
    third.stop().await;
    bench.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduler_cut_off_from_the_broker_never_shares_a_shard_and_loses_nothing() {
    let bench = Bench::new(4).await;
    let (first, second) = bench.two_schedulers().await;
    let watching = bench.watch_exclusive();
    let worker = bench.worker(Duration::from_millis(800));

    let finals_by_tenant = bench.reply_queues().await;
    let mut amqp_keys = Vec::new();
    for round in 0..3 {
        for tenant in 0..bench.tenants.len() {
            let key = unique(&format!("a{tenant}"));
            bench
                .publish(tenant, &key, &finals_by_tenant[tenant].0)
                .await;
            amqp_keys.push((tenant, key));
        }
        if round == 0 {
            // The connection drops under the first scheduler's feet, twice: its claims go with it,
            // and it must stop following its shards before anyone else may take them.
            first.queue.drop_connection().await;
            tokio::time::sleep(Duration::from_millis(700)).await;
            first.queue.drop_connection().await;
        }
    }
    bench.until_all_succeeded(&second.url(), &amqp_keys).await;
    assert_each_answered_once(&finals_by_tenant, &amqp_keys).await;
    bench.until_balanced(2, Duration::from_secs(20)).await;
    bench.assert_each_job_was_routed_allowing_reruns();

    watching.stop().await;
    worker.abort();
    first.stop().await;
    second.stop().await;
    bench.cleanup().await;
}
