"""Load generator for the Celery side of the peer run: Celery's best client, measured like reverie-load.

It starts its own Celery worker nodes (prefork; each in its own process group, listed in --pids-file so
a driver can stop them whatever happens), publishes --count tasks with publisher confirms keeping at most
--in-flight outstanding, and collects results straight from the Redis result backend: Celery's Redis
backend stores each result (SETEX celery-task-meta-<id>) and PUBLISHes it on a channel of the same name,
so one pattern subscription for the run's task ids gets every result as it is stored. (Celery's own
AsyncResult path would SUBSCRIBE once per task from the client and drain from one thread; the pattern is
the same mechanism with one subscription.) A final MGET sweep catches any result whose message was missed.

Measured: throughput, end-to-end latency per task (before the confirmed publish to the result's arrival)
p50/p95/p99/max, the publish confirm time (to tell whether the client is the bottleneck), and the CPU
per finished job of each process: the Celery worker nodes with their pool processes, this client,
RabbitMQ (beam.smp), Redis and the S3 server, read from /proc like load-tests/src/cpu.rs, and the whole
machine's busy ticks from /proc/stat.

With --kill-worker-after N it is the crash test instead: after N results it kill -9's one worker node (its
whole process group: the consumer process holding the AMQP connection and its pool process, what a
crashed container or machine does) or, with --kill-target child, only the pool process running the job
(what the OOM killer does), starts a replacement node for a node kill, and at the end counts jobs lost
(no result within --stall-limit-s), jobs executed twice (each execution counts itself in a Redis hash)
and jobs answered twice.

  python bench.py --count 2000 --render-ms 1.1 --output-bytes 5009 --report-json celery.json
  python bench.py --cleanup --run-id ID        # delete the queue, its exchange and the run's Redis keys
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

import botocore.exceptions
import redis

import farm

# The client publishes only; it reads results itself (above), so Celery's per-task result subscription
# is turned off here. The worker nodes keep the Redis backend from farm.py.
farm.app.conf.result_backend = "disabled://"

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
SERVICES = {"beam.smp": "RabbitMQ", "redis-server": "Redis", "s3s-fs": "S3 server (s3s-fs)"}
RESULT_PREFIX = "celery-task-meta-"
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=2000, help="tasks to send")
    p.add_argument("--in-flight", type=int, default=512, help="tasks outstanding at most")
    p.add_argument("--rate", type=float, default=0.0, help="tasks per second; 0 sends as fast as taken")
    p.add_argument("--publishers", type=int, default=8,
                   help="publishing threads: a confirmed publish blocks until the broker confirms, so "
                        "several threads keep confirms overlapping as reverie-load's concurrent publishes do")
    p.add_argument("--nodes", type=int, default=1, help="worker nodes to start")
    p.add_argument("--concurrency", type=int, default=2, help="prefork pool processes per node")
    p.add_argument("--render-ms", type=float, default=1.0, help="CPU time of one render (Reverie's render_ms.p50)")
    p.add_argument("--output-bytes", type=int, default=5000, help="output object size (Reverie's PNG)")
    p.add_argument("--input-bytes", type=int, default=0, help="input photo size (default: --output-bytes)")
    p.add_argument("--run-id", default=f"peer-{os.getpid()}", help="prefix of task ids, keys and node names")
    p.add_argument("--stall-limit-s", type=float, default=120, help="stop waiting after this long without a result")
    p.add_argument("--kill-worker-after", type=int, default=0, metavar="N", help="crash test: kill after N results")
    p.add_argument("--kill-target", choices=["node", "child"], default="node")
    p.add_argument("--pids-file", help="process group ids of the started nodes, one a line")
    p.add_argument("--log-dir", default=".", help="where the worker nodes log")
    p.add_argument("--report-json", help="also write the report as JSON here")
    p.add_argument("--cleanup", action="store_true", help="only delete the queue, exchange and --run-id's Redis keys")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------------
# CPU accounting (/proc), as load-tests/src/cpu.rs does it
# ---------------------------------------------------------------------------------------------------

def process_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    # The command name may hold spaces: count fields after its closing parenthesis (utime, stime = 11, 12).
    fields = stat[stat.rindex(")") + 1:].split()
    return int(fields[11]) + int(fields[12])


def descendants(pid):
    """pid and every process below it (a node's pool processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo.extend(int(child) for child in f.read().split())
        except OSError:
            pass
    return found


def machine_busy_ticks():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    # Everything but idle and iowait; guest time (8, 9) is already inside user and nice.
    return sum(values[:8]) - values[3] - values[4]


def cpu_snapshot(node_pids):
    ticks = {
        "Celery worker nodes (consumer + pool processes)": sum(
            process_ticks(p) for node in node_pids for p in descendants(node)),
        "load generator (bench.py)": process_ticks(os.getpid()),
    }
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                label = SERVICES.get(f.read().strip())
        except OSError:
            continue
        if label:
            ticks[label] = ticks.get(label, 0) + process_ticks(pid)
    ticks["whole machine (all processes)"] = machine_busy_ticks()
    return ticks


# ---------------------------------------------------------------------------------------------------
# Worker nodes
# ---------------------------------------------------------------------------------------------------

class Nodes:
    """Celery worker nodes this run started, each the leader of its own process group."""

    def __init__(self, args):
        self.args, self.procs, self.started = args, [], 0

    def start(self, concurrency):
        name = f"{self.args.run_id}-{self.started}"
        log = open(os.path.join(self.args.log_dir, f"{name}.log"), "ab")
        command = [sys.executable, "-m", "celery", "-A", "farm", "worker", "--pool", "prefork",
                   "--concurrency", str(concurrency), "-n", f"{name}@%h", "--loglevel", "WARNING",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]
        proc = subprocess.Popen(command, cwd=HERE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.started += 1
        self.write_pids()
        return proc

    def write_pids(self):
        if self.args.pids_file:
            with open(self.args.pids_file, "w") as f:
                f.writelines(f"{p.pid}\n" for p in self.procs)

    def alive(self):
        return [p for p in self.procs if p.poll() is None]

    def kill_node(self, proc):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self):
        # Warm shutdown (finish the job in hand), then whatever is left of each group.
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def queue_consumers():
    """Consumers on the run's queue (declaring it as the workers do, so this works before they start)."""
    with farm.app.connection_for_write() as conn:
        queue = farm.app.conf.task_queues[0](conn.default_channel)
        queue.declare()
        return queue.queue_declare()[2]


def wait_for_consumers(count, limit_s=60):
    deadline = time.monotonic() + limit_s
    while queue_consumers() < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"error: {count} worker nodes did not start consuming within {limit_s} s")
        time.sleep(0.25)


# ---------------------------------------------------------------------------------------------------
# The load
# ---------------------------------------------------------------------------------------------------

class Run:
    """Shared state of the publishing threads and the result collector."""

    def __init__(self, args, redis_client):
        self.args, self.redis = args, redis_client
        self.lock = threading.Lock()
        self.permits = threading.Semaphore(max(1, args.in_flight))
        self.next_index = 0
        self.sent_at = {}       # task id -> perf_counter at publish, until its first result
        self.latencies = []     # seconds, one per answered task
        self.confirms = []      # seconds each confirmed publish took
        self.answers = {}       # task id -> result messages received
        self.done = self.failed = self.publish_failed = 0
        self.last_result = time.monotonic()
        self.kill_due = threading.Event()
        self.stop = threading.Event()
        self.subscribed = threading.Event()
        self.started = 0.0

    def task_id(self, index):
        return f"{self.args.run_id}-{index}"

    # -- publishing ----------------------------------------------------------------------------------

    def publisher(self, kwargs):
        interval = 1.0 / self.args.rate if self.args.rate > 0 else 0.0
        while not self.stop.is_set():
            self.permits.acquire()
            with self.lock:
                index = self.next_index
                if index >= self.args.count or self.stop.is_set():
                    self.permits.release()
                    return
                self.next_index += 1
            if interval:
                time.sleep(max(0.0, self.started + index * interval - time.perf_counter()))
            task_id = self.task_id(index)
            output_key = f"{self.args.run_id}/out/{index}.png"
            began = time.perf_counter()
            with self.lock:
                self.sent_at[task_id] = began
            try:
                farm.app.send_task("farm.render", task_id=task_id, kwargs=dict(kwargs, output_key=output_key))
            except Exception as error:  # not confirmed: the broker never took it, no result is owed
                print(f"publish failed: {error}", file=sys.stderr)
                with self.lock:
                    self.sent_at.pop(task_id, None)
                    self.publish_failed += 1
                self.permits.release()
                continue
            with self.lock:
                self.confirms.append(time.perf_counter() - began)

    # -- results -------------------------------------------------------------------------------------

    def collector(self):
        pubsub = self.redis.pubsub(ignore_subscribe_messages=False)
        pubsub.psubscribe(f"{RESULT_PREFIX}{self.args.run_id}-*")
        while not self.stop.is_set():
            message = pubsub.get_message(timeout=0.5)
            if message is None:
                continue
            if message["type"] == "psubscribe":
                self.subscribed.set()
            elif message["type"] == "pmessage":
                now = time.perf_counter()
                channel = message["channel"].decode()
                self.record(channel[len(RESULT_PREFIX):], json.loads(message["data"]), now)
        pubsub.close()

    def record(self, task_id, meta, now):
        status = meta.get("status")
        if status not in ("SUCCESS", "FAILURE"):
            return
        with self.lock:
            self.answers[task_id] = self.answers.get(task_id, 0) + 1
            began = self.sent_at.pop(task_id, None)
            if began is None:
                return  # a second answer: counted in answers, no new latency
            self.latencies.append(now - began)
            if status == "SUCCESS":
                self.done += 1
            else:
                self.failed += 1
                if self.failed == 1:
                    print(f"first failure: {meta.get('result')}", file=sys.stderr)
            self.last_result = time.monotonic()
            if self.args.kill_worker_after and self.done + self.failed == self.args.kill_worker_after:
                self.kill_due.set()
        self.permits.release()

    def sweep(self):
        """Results stored while their message was missed (none expected): read the keys themselves."""
        with self.lock:
            pending = list(self.sent_at)
        if not pending:
            return 0
        now = time.perf_counter()
        values = self.redis.mget([RESULT_PREFIX + task_id for task_id in pending])
        found = 0
        for task_id, value in zip(pending, values):
            if value is not None:
                self.record(task_id, json.loads(value), now)
                found += 1
        return found

    def answered(self):
        with self.lock:
            return self.done + self.failed + self.publish_failed


def quantiles(seconds):
    ordered = sorted(seconds)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}

    def at(q):  # nearest rank, as HdrHistogram's value_at_quantile
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] * 1000.0

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1] * 1000.0}


def seed_input(args):
    s3 = farm.s3_client()
    try:
        s3.create_bucket(Bucket=farm.BUCKET)
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    key = f"{args.run_id}/input/photo.png"
    size = args.input_bytes or args.output_bytes
    s3.put_object(Bucket=farm.BUCKET, Key=key, Body=os.urandom(size))
    return key


def kill_one(args, nodes):
    """The crash: kill -9 node 0's process group (and start a replacement) or its pool process."""
    victim = nodes.procs[0]
    if args.kill_target == "node":
        print(f"kill -9 worker node {victim.pid} (its whole process group), starting a replacement",
              file=sys.stderr)
        nodes.kill_node(victim)
        nodes.start(args.concurrency)
    else:
        children = descendants(victim.pid)[1:]
        print(f"kill -9 pool process {children[0]} of worker node {victim.pid}", file=sys.stderr)
        os.kill(children[0], signal.SIGKILL)


def run_load(args, nodes, redis_client):
    run = Run(args, redis_client)
    marker = f"{args.run_id}:executions" if args.kill_worker_after else None
    kwargs = {"input_key": seed_input(args), "render_ms": args.render_ms,
              "output_bytes": args.output_bytes, "marker": marker}
    collector = threading.Thread(target=run.collector, daemon=True)
    collector.start()
    if not run.subscribed.wait(10):
        raise SystemExit("error: no result subscription within 10 s")

    before = cpu_snapshot([p.pid for p in nodes.procs])
    run.started = time.perf_counter()
    publishers = [threading.Thread(target=run.publisher, args=(kwargs,), daemon=True)
                  for _ in range(max(1, args.publishers))]
    for thread in publishers:
        thread.start()
    while run.answered() < args.count:
        if run.kill_due.is_set():
            run.kill_due.clear()
            kill_one(args, nodes)
        if time.monotonic() - run.last_result > args.stall_limit_s and run.sweep() == 0:
            print(f"results stalled at {run.answered()} of {args.count}", file=sys.stderr)
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - run.started
    run.sweep()
    after = cpu_snapshot([p.pid for p in nodes.alive()])
    run.stop.set()
    for _ in publishers:
        run.permits.release()  # wakes a publisher waiting for a permit, which then sees `stop`
    collector.join(2)
    for thread in publishers:
        thread.join(2)

    jobs = max(1, run.done)
    report = {
        "system": "celery",
        "workers": args.nodes * args.concurrency,
        "nodes": args.nodes,
        "concurrency": args.concurrency,
        "prefetch_multiplier": farm.app.conf.worker_prefetch_multiplier,
        "publishers": args.publishers,
        "in_flight": args.in_flight,
        "render_ms": args.render_ms,
        "output_bytes": args.output_bytes,
        "sent": run.next_index,
        "done": run.done,
        "failed": run.failed,
        "publish_failed": run.publish_failed,
        "seconds": seconds,
        "jobs_per_second": run.done / max(seconds, 1e-9),
        "latency_ms": quantiles(run.latencies),
        "publish_confirm_ms": quantiles(run.confirms),
        "cpu_ms_per_job": {label: (after.get(label, 0) - ticks) * 1000.0 / TICKS_PER_SECOND / jobs
                           for label, ticks in before.items()},
    }
    if args.kill_worker_after:
        # Nodes were killed and started during the run: their CPU is not comparable, so none is reported.
        del report["cpu_ms_per_job"]
        executions = {k.decode(): int(v) for k, v in redis_client.hgetall(marker).items()}
        report["kill"] = {
            "target": args.kill_target,
            "after_results": args.kill_worker_after,
            "confirmed": run.next_index - run.publish_failed,
            "lost": len(run.sent_at),
            "executions": sum(executions.values()),
            "executed_twice": sum(1 for n in executions.values() if n > 1),
            "answered_twice": sum(1 for n in run.answers.values() if n > 1),
            "nodes_started": nodes.started,
        }
    return report


def print_report(report):
    print(f"Celery load test: {report['sent']} tasks, {report['nodes']} node(s) x {report['concurrency']} "
          f"prefork processes, prefetch x{report['prefetch_multiplier']}, render {report['render_ms']:.2f} ms CPU, "
          f"output {report['output_bytes']} B")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| tasks done / failed / publishes not confirmed | {report['done']} / {report['failed']} / "
          f"{report['publish_failed']} |")
    print(f"| throughput (jobs/s) | {report['jobs_per_second']:.1f} |")
    for name in ("p50", "p95", "p99", "max"):
        print(f"| end-to-end {name} (ms) | {report['latency_ms'][name]:.2f} |")
    confirm = report["publish_confirm_ms"]
    print(f"| confirmed publish p50 / p99 (ms), {report['publishers']} publishing threads | "
          f"{confirm['p50']:.2f} / {confirm['p99']:.2f} |")
    if "kill" in report:
        kill = report["kill"]
        print(f"| kill -9 of a worker {kill['target']} after {kill['after_results']} results | "
              f"{kill['lost']} lost, {kill['executed_twice']} executed twice, {kill['answered_twice']} "
              f"answered twice ({kill['executions']} executions of {kill['confirmed']} confirmed tasks) |")
    print()
    if "cpu_ms_per_job" in report:
        print("| process | CPU ms per job |")
        print("|---|---|")
        for label, ms in report["cpu_ms_per_job"].items():
            print(f"| {label} | {ms:.2f} |")
        print()


def cleanup(args, redis_client):
    with farm.app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_delete(farm.QUEUE)
        channel.exchange_delete(farm.QUEUE)
    keys = 0
    for pattern in (f"{RESULT_PREFIX}{args.run_id}*", f"{args.run_id}*"):
        batch = list(redis_client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(batch), 500):
            keys += redis_client.delete(*batch[start:start + 500])
    s3 = farm.s3_client()
    objects = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=farm.BUCKET, Prefix=f"{args.run_id}"):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=farm.BUCKET, Key=item["Key"])
            objects += 1
    print(f"deleted queue {farm.QUEUE}, {keys} Redis keys and {objects} objects of {args.run_id}")


def main():
    args = parse_args()
    redis_client = redis.Redis.from_url(os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"))
    if args.cleanup:
        cleanup(args, redis_client)
        return
    # A driver's SIGTERM unwinds through `finally`, so the nodes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nodes = Nodes(args)
    try:
        for _ in range(args.nodes):
            nodes.start(args.concurrency)
        wait_for_consumers(args.nodes)
        report = run_load(args, nodes, redis_client)
    finally:
        nodes.stop()
    print_report(report)
    if args.report_json:
        with open(args.report_json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
