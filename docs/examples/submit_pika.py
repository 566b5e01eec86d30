#!/usr/bin/env python3
"""A non-Rust service using Reverie's AMQP contract (request schema v1, reply schema v1) with pika.

It publishes one generation request to the scheduler's requests queue with a message_id (the idempotency
key), a private reply queue as reply_to and a correlation_id, then prints every reply until the final one.
Publishing the same message_id again yields `accepted` with `duplicate: true` and no new jobs.

Environment:
  REVERIE_AMQP_URL     amqp://guest:guest@127.0.0.1:5672/%2f
  REVERIE_QUEUE_PREFIX reverie            (requests go to {prefix}.requests)
  REVERIE_TENANT       the tenant id
  REVERIE_TOKEN        TENANT:SECRET      (sent as the x-reverie-token header)
  REVERIE_PROMPT       the prompt          (default: "me at sunset in Lisbon")
  REVERIE_REQUEST_ID   the request id      (default: a random one)
  REVERIE_WAIT_FINAL   1 to wait for done/failed/cancelled, 0 to stop after accepted/rejected

Exit status: 0 when the request was accepted (and, if waited for, done); 1 otherwise.
"""

import json
import os
import sys
import uuid

import pika

FINAL = {"done", "failed", "cancelled", "rejected"}


def main() -> int:
    url = os.environ.get("REVERIE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    prefix = os.environ.get("REVERIE_QUEUE_PREFIX", "reverie")
    tenant = os.environ["REVERIE_TENANT"]
    token = os.environ["REVERIE_TOKEN"]
    request_id = os.environ.get("REVERIE_REQUEST_ID") or uuid.uuid4().hex
    wait_final = os.environ.get("REVERIE_WAIT_FINAL", "1") == "1"
    request = {
        "schema_version": 1,
        "tenant": tenant,
        "prompt": os.environ.get("REVERIE_PROMPT", "me at sunset in Lisbon"),
        "n": 1,
        "priority": "interactive",
        "kind": "generate",
    }

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    # A private, exclusive reply queue: the broker deletes it when this client goes away.
    reply_queue = channel.queue_declare(queue="", exclusive=True).method.queue
    correlation_id = uuid.uuid4().hex
    channel.confirm_delivery()
    channel.basic_publish(
        exchange="",
        routing_key=f"{prefix}.requests",
        body=json.dumps(request).encode(),
        properties=pika.BasicProperties(
            message_id=request_id,
            correlation_id=correlation_id,
            reply_to=reply_queue,
            content_type="application/json",
            delivery_mode=2,
            headers={"x-reverie-token": token},
        ),
        mandatory=True,
    )

    outcome = 1
    for method, properties, body in channel.consume(reply_queue, inactivity_timeout=60):
        if method is None:
            print("no reply within 60 s", file=sys.stderr)
            break
        channel.basic_ack(method.delivery_tag)
        if properties.correlation_id != correlation_id:
            continue
        reply = json.loads(body)
        assert reply["schema"] == "reverie.reply.v1", reply
        print(json.dumps(reply), flush=True)
        kind = reply["type"]
        if kind == "accepted" and not wait_final:
            outcome = 0
            break
        if kind in FINAL:
            outcome = 0 if kind == "done" else 1
            break
    channel.cancel()
    connection.close()
    return outcome


if __name__ == "__main__":
    sys.exit(main())
