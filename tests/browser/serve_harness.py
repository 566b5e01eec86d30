"""Starts `reverie serve` on a fresh data directory for the browser and API tests, and talks to its API.

The server runs the embedded default (local store, in-process queue, in-memory cache) with the sd-tiny
diffusion fixture, so renders take seconds and send live previews; the sample library is the folder it may
import from.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_LIBRARY = ROOT / "tests" / "fixtures" / "library"
SD_TINY = ROOT / "tests" / "fixtures" / "sd-tiny" / "model"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`reverie serve` in a temporary data directory; `stop()` ends it and removes everything."""

    def __init__(self, binary, extra_args=()):
        self.binary = str(binary)
        self.work = Path(tempfile.mkdtemp(prefix="reverie-serve-test-"))
        self.data_dir = self.work / "data"
        self.photos = self.work / "photos"
        # A copy, so the test can also place a folder outside the import root next to it.
        shutil.copytree(SAMPLE_LIBRARY, self.photos / "library", symlinks=True)
        (self.work / "outside").mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.work / "serve.log"
        self.extra_args = list(extra_args)
        self.process = None
        self.token = None

    def global_args(self):
        return [
            "--data-dir", str(self.data_dir),
            "--set", f"diffusion.model={SD_TINY}",
            "--set", "diffusion.size=128",
            "--set", "diffusion.steps=12",
            "--set", "worker.preview_interval_ms=100",
        ]

    def start(self, timeout=300):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.binary, *self.global_args(), "serve", "--photos", str(self.photos),
             "--listen", f"127.0.0.1:{self.port}", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.work,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"reverie serve exited {self.process.returncode}:\n{self.log()}")
            match = re.search(r"token\s+(\S+:\S+)", self.log())
            if match and self.ready():
                self.token = match.group(1)
                return self
            time.sleep(0.5)
        raise RuntimeError(f"reverie serve did not start in {timeout}s:\n{self.log()}")

    def ready(self):
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def new_tenant(self, name):
        """Another tenant and its token, made with the CLI on the same data directory."""
        out = subprocess.run(
            [self.binary, "--data-dir", str(self.data_dir), "tenant", "create", name],
            check=True, capture_output=True, text=True,
        ).stdout
        return out.strip().splitlines()[-1]

    def api(self, method, path, token=None, body=None, raw=None, headers=None):
        """(status, parsed JSON or bytes) of one API call."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                status, payload, kind = answer.status, answer.read(), answer.headers.get("content-type", "")
        except urllib.error.HTTPError as error:
            status, payload, kind = error.code, error.read(), error.headers.get("content-type", "")
        if kind.startswith("application/json"):
            return status, json.loads(payload)
        return status, payload


def reverie_binary():
    explicit = os.environ.get("REVERIE_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "reverie"
