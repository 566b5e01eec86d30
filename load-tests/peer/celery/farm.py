"""The Celery side of the peer run: one app, one task doing what Reverie's cheapest job does.

Per job: GET the input photo object from S3, "render" for the same CPU time as Reverie's 64x64 pop-art
render (a calibrated burn: Reverie's load run times its own render alone, and that p50 is passed in),
PUT an output object of the size of Reverie's output PNG, return a small result dict (which the Redis
result backend stores and publishes).

Everything run-specific comes from the environment, so the worker (`celery -A farm worker`) and the
client (`bench.py`) build the same app:

  PEER_AMQP_URL   broker, e.g. amqp://guest:guest@127.0.0.1:5672//
  PEER_REDIS_URL  result backend, e.g. redis://127.0.0.1:6379/0
  PEER_QUEUE      the run's own queue name (deleted by bench.py at the end)
  PEER_S3_ENDPOINT, PEER_S3_ACCESS_KEY, PEER_S3_SECRET_KEY, PEER_S3_BUCKET
"""

import os
import time

import boto3
import botocore.config
from celery import Celery
from celery.signals import worker_process_init
from kombu import Exchange, Queue

QUEUE = os.environ.get("PEER_QUEUE", "peer-celery")
BUCKET = os.environ.get("PEER_S3_BUCKET", "peer-celery")

app = Celery(
    "farm",
    broker=os.environ.get("PEER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    # A job is acknowledged only after it ran, and a job whose pool process died (kill -9, OOM) is
    # rejected back to the queue instead of being acknowledged as failed: at-least-once execution.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Messages survive a broker restart: a durable queue and persistent messages (Celery's default,
    # stated here so the run's guarantees do not depend on a default).
    task_default_delivery_mode="persistent",
    task_queues=[Queue(QUEUE, Exchange(QUEUE, type="direct", durable=True), routing_key=QUEUE, durable=True)],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    # Publisher confirms: apply_async returns only once the broker has taken the message.
    broker_transport_options={"confirm_publish": True},
    # Prefetch: each pool process may hold 4 unstarted jobs. The jobs take a few milliseconds, so with a
    # multiplier of 1 every process would wait a broker round trip between two jobs; 4 keeps the pool
    # fed while bounding what a crashed worker hands back for redelivery (with acks_late, prefetched
    # jobs are unacknowledged and return to the queue, so this is a latency bound, not a loss bound).
    # Reverie's worker holds up to batches_in_flight x batch_max jobs (2 x 16 in the load run) for the
    # same reason.
    worker_prefetch_multiplier=4,
    # Results are read within seconds by the client; an hour keeps Redis from filling with old ones.
    result_expires=3600,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # A lean worker, as one tuned for throughput runs: no remote-control queue, no events, no gossip.
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
)

# One S3 client per worker process, created after the fork (a boto3 client must not cross a fork).
_s3 = None


@worker_process_init.connect
def _open_s3(**_):
    global _s3
    _s3 = s3_client()


def s3_client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("PEER_S3_ENDPOINT", "http://127.0.0.1:9000"),
        aws_access_key_id=os.environ.get("PEER_S3_ACCESS_KEY", "reverie"),
        aws_secret_access_key=os.environ.get("PEER_S3_SECRET_KEY", "reverie-secret"),
        region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
    )


def burn_cpu(render_ms):
    """Spin until this thread has used render_ms of CPU: the render's cost without its code."""
    until = time.thread_time() + render_ms / 1000.0
    x = 0
    while time.thread_time() < until:
        for i in range(200):
            x = (x * 6364136223846793005 + i) & 0xFFFFFFFFFFFFFFFF
    return x


@app.task(name="farm.render")
def render(input_key, output_key, render_ms, output_bytes, marker=None):
    """Reverie's cheapest job. `marker` names a Redis hash counting executions (kill test only)."""
    if marker:
        # Counted when an execution starts: a job run twice (redelivered after a crash) counts 2.
        app.backend.client.hincrby(marker, render.request.id, 1)
    photo = _s3.get_object(Bucket=BUCKET, Key=input_key)["Body"].read()
    burn_cpu(render_ms)
    # The output's bytes depend on the input (like a render's), not a constant reused from memory.
    body = (photo * (output_bytes // max(len(photo), 1) + 1))[:output_bytes]
    _s3.put_object(Bucket=BUCKET, Key=output_key, Body=body, ContentType="image/png")
    return {"output_key": output_key, "input_bytes": len(photo), "output_bytes": len(body)}
