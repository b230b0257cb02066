"""A local AWS stand-in: ``moto_server`` (SQS and S3) in its own process on a free 127.0.0.1 port.

A separate process serves this process, ``rayscribe`` subprocesses and Ray workers alike through the standard
``AWS_ENDPOINT_URL``; nothing in production code knows about it. Used by the tests (one server per session,
reset between tests), the soak and the benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jobs.harness.env import AWS_ENV, patched_environ
from jobs.harness.ports import free_port

START_TIMEOUT = 60.0


class MotoStartError(RuntimeError):
    """moto_server exited or did not answer in time; the message ends with its log."""


@dataclass
class MotoServer:
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def reset(self) -> None:
        """Forget every queue and bucket."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise RuntimeError(f"moto reset answered {response.status}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point a client (boto3, ``rayscribe``) at this server."""
        return {**AWS_ENV, "AWS_ENDPOINT_URL": self.url}


def start_moto(workdir: Path | None = None, timeout: float = START_TIMEOUT) -> MotoServer:
    """Start moto on a free loopback port, its log in ``workdir`` (a fresh temp dir when not given), and wait
    until it answers; raises :class:`MotoStartError` (the server stopped) otherwise."""
    port = free_port()
    folder = workdir or Path(tempfile.mkdtemp(prefix="rs-moto-"))
    log = folder / "moto.log"
    binary = Path(sys.executable).parent / "moto_server"
    with log.open("wb") as handle:
        process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=handle,
                                   stderr=subprocess.STDOUT, env={**os.environ, **AWS_ENV})
    server = MotoServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MotoStartError(f"moto_server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # polling interval while the server starts, not a synchronisation point
    server.stop()
    raise MotoStartError(f"moto_server did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def moto_environment(workdir: Path | None = None) -> Iterator[MotoServer]:
    """A started moto with ``AWS_*`` pointing at it in this process (and all it starts) for the block."""
    server = start_moto(workdir)
    try:
        with patched_environ(server.env()):
            yield server
    finally:
        server.stop()


def unique_queue_env(tag: str = "t") -> dict[str, str]:
    """RAYSCRIBE_* names for queues and buckets that nothing else uses."""
    suffix = f"{tag}-{uuid.uuid4().hex[:8]}"
    return {
        "RAYSCRIBE_QUEUE_NAME": f"jobs-{suffix}",
        "RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME": f"jobs-high-{suffix}",
        "RAYSCRIBE_DLQ_NAME": f"jobs-dlq-{suffix}",
        "RAYSCRIBE_INPUT_BUCKET": f"in-{suffix}",
        "RAYSCRIBE_OUTPUT_BUCKET": f"out-{suffix}",
    }
