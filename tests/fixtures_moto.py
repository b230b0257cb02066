"""A local AWS stand-in for the queue tests: moto in server mode on 127.0.0.1, started once per session.

The server is a separate process (``moto_server``), so it serves this process, the ``rayscribe`` subprocesses and
Ray workers alike through the standard ``AWS_ENDPOINT_URL``; nothing in production code knows about it.
``moto`` resets its state before a test; ``queue_names`` gives a test its own queue and bucket names instead, for
module-scoped set-ups that must survive other tests' resets.
"""

from __future__ import annotations

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

import pytest

__all__ = ["MotoServer", "moto", "moto_server", "queue_names", "unique_queue_env"]

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
START_TIMEOUT = 60.0


@dataclass
class MotoServer:
    url: str
    process: subprocess.Popen

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def _wait_until_up(server: MotoServer, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"moto_server exited with {server.process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # polling interval while the server starts, not a synchronisation point
    server.stop()
    pytest.fail(f"moto_server did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


def unique_queue_env(tag: str = "t") -> dict[str, str]:
    """RAYSCRIBE_* names for queues and buckets that no other test uses."""
    suffix = f"{tag}-{uuid.uuid4().hex[:8]}"
    return {
        "RAYSCRIBE_QUEUE_NAME": f"jobs-{suffix}",
        "RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME": f"jobs-high-{suffix}",
        "RAYSCRIBE_DLQ_NAME": f"jobs-dlq-{suffix}",
        "RAYSCRIBE_INPUT_BUCKET": f"in-{suffix}",
        "RAYSCRIBE_OUTPUT_BUCKET": f"out-{suffix}",
    }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto on a free loopback port; ``AWS_*`` set for this process and everything it starts."""
    from tests.conftest import free_port

    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="rs-moto-")) / "moto.log"
    binary = Path(sys.executable).parent / "moto_server"
    with log.open("wb") as handle:
        process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=handle,
                                   stderr=subprocess.STDOUT, env={**os.environ, **AWS_ENV})
    server = MotoServer(url=f"http://127.0.0.1:{port}", process=process)
    _wait_until_up(server, log)
    saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL": server.url})
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """The session's moto server with its state reset."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def queue_names(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fresh queue and bucket names, set in this process's environment for the test."""
    names = unique_queue_env()
    for key, value in names.items():
        monkeypatch.setenv(key, value)
    return names
