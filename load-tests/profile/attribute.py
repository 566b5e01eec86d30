#!/usr/bin/env python3
"""Where the farm process's CPU goes, from `perf script` output of a load run.

Each sample's stack is read from the leaf towards the root. It is charged to the first library it meets
(the S3 SDK, the AMQP client, JSON, the allocator, ...) and, separately, to the nearest Reverie module
that caused it (reverie_worker::outputs, reverie_scheduler::ingress, ...). Two tables come out: what burns
the CPU, and on whose behalf. Usage:

    perf record -F 999 --call-graph dwarf,32768 -o perf.data -- target/release/reverie-load --count 3000 --no-baseline
    perf script -i perf.data --no-inline | load-tests/profile/attribute.py [--jobs 3000]
"""
import argparse
import collections
import re
import sys

# What burns the CPU: the first match from the leaf wins, so the more specific patterns come first.
LIBRARIES = [
    ("painter (the render)", re.compile(r"reverie_paint::")),
    ("PNG encode/decode", re.compile(r"\bpng::|fdeflate|miniz_oxide|crc32fast")),
    ("JPEG/photo decode", re.compile(r"zune_jpeg|jpeg_decoder|image::codecs")),
    ("SigV4 signing", re.compile(r"aws_sigv4|sha2::|hmac")),
    ("S3 SDK (smithy orchestrator, endpoint, interceptors)", re.compile(r"aws_smithy|aws_sdk_s3|aws_runtime|aws_types|aws_credential")),
    ("HTTP client (hyper)", re.compile(r"\bhyper(_util)?::|\bh2::|\bhttp::")),
    ("AMQP client (lapin, amq-protocol)", re.compile(r"\blapin::|amq_protocol|async_rs::")),
    ("Redis client", re.compile(r"\bredis::|combine::")),
    ("JSON (serde_json)", re.compile(r"serde_json::")),
    ("bincode/envelopes", re.compile(r"bincode::|reverie_shared::envelope")),
    ("metrics (prometheus)", re.compile(r"\bprometheus::")),
    ("tracing", re.compile(r"\btracing(_core|_subscriber)?::")),
    ("allocator (mimalloc)", re.compile(r"\b_?mi_|mimalloc")),
    ("memcpy/memmove", re.compile(r"__mem(move|cpy|set|cmp)")),
    ("prompt understanding", re.compile(r"reverie_prompt::")),
    ("tokio runtime", re.compile(r"\btokio::")),
]
# On whose behalf: the nearest Reverie module (two path segments) from the leaf.
OWNER = re.compile(r"\b(reverie_[a-z_]+::[a-z_]+)")


def samples(lines):
    stack = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if stack:
                yield stack
            stack = []
        elif line.startswith("\t") or line.startswith(" "):
            parts = line.strip().split(" ", 1)
            stack.append(parts[1] if len(parts) > 1 else parts[0])
        # header lines (command, pid, time) start at column 0 and are skipped
    if stack:
        yield stack


def library_of(stack):
    for frame in stack:
        for name, pattern in LIBRARIES:
            if pattern.search(frame):
                return name
    return "kernel and other" if any("kernel" in f for f in stack) else "other"


def owner_of(stack):
    for frame in stack:
        found = OWNER.search(frame)
        if found:
            return found.group(1)
    return "(no Reverie frame: runtime, kernel, threads)"


def table(title, counts, total, jobs, ms_per_sample):
    print(f"| {title} | share | CPU ms per job |")
    print("|---|---|---|")
    for name, count in counts.most_common():
        share = count / total
        if share < 0.005:
            continue
        per_job = f"{count * ms_per_sample / jobs:.3f}" if jobs else "-"
        print(f"| {name} | {share:.1%} | {per_job} |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=0, help="jobs the run finished (for ms per job)")
    parser.add_argument("--hz", type=float, default=999.0, help="the -F of perf record")
    args = parser.parse_args()
    libraries, owners = collections.Counter(), collections.Counter()
    total = 0
    for stack in samples(sys.stdin):
        total += 1
        libraries[library_of(stack)] += 1
        owners[owner_of(stack)] += 1
    if not total:
        sys.exit("no samples on standard input (pipe `perf script` into this)")
    ms_per_sample = 1000.0 / args.hz
    print(f"{total} samples, {total * ms_per_sample / 1000:.1f} CPU-s\n")
    table("what burns it", libraries, total, args.jobs, ms_per_sample)
    table("on whose behalf", owners, total, args.jobs, ms_per_sample)


if __name__ == "__main__":
    main()
