"""A wrong ``--address`` fails fast: every command that joins a cluster answers within the bound with one line
naming the address and what to check, exit 2, and none of Ray's C++ connection warnings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.join import ClusterUnreachable, check_address
from jobs.harness.ports import free_port
from jobs.harness.ray_cluster import RayHead
from tests.speech import REPO, SAMPLES

BIN = Path(sys.executable).parent
BOUND_S = 15.0
RAY_SPAM = ("rpc_client", "gcs_client", "Failed to connect to GCS", "Traceback", "Connecting to existing Ray")


def _commands(address: str, out: Path) -> dict[str, list[str]]:
    audio = str(SAMPLES / "jfk.mp3")
    return {
        "transcribe": [str(BIN / "rayscribe"), "transcribe", audio, "--out", str(out), "--address", address],
        "worker": [str(BIN / "rayscribe"), "worker", "--drain", "--address", address],
        "serve": [str(BIN / "rayscribe"), "serve", "--address", address, "--port", str(free_port())],
        "jobs.batch": [sys.executable, "-m", "jobs.batch", audio, "--out", str(out), "--address", address],
    }


@pytest.fixture()
def silent_listener() -> Iterator[str]:
    """A port that accepts connections and never answers (a service that is not a Ray GCS)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("command", ["transcribe", "worker", "serve", "jobs.batch"])
def test_an_unreachable_address_fails_fast_with_one_line(command: str, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # free a moment ago: nothing listens there
    argv = _commands(address, tmp_path / "out")[command]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "RAYSCRIBE_BACKEND": "simulated", "RAYSCRIBE_INPUT_BUCKET": "",
                               "COLUMNS": "400"})
    elapsed = time.monotonic() - started
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert elapsed < BOUND_S, f"{command} took {elapsed:.1f} s"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert address in lines[0] and "ray start --head" in lines[0] and lines[0].startswith("error:")
    assert not any(spam in done.stderr + done.stdout for spam in RAY_SPAM), done.stderr


def test_a_port_that_is_not_a_gcs_is_refused_within_the_timeout(silent_listener: str) -> None:
    import grpc  # noqa: F401 - imported ahead: the bound is on the wait, not on a first import on a busy machine
    import ray.core.generated.gcs_service_pb2_grpc  # noqa: F401

    started = time.monotonic()
    with pytest.raises(ClusterUnreachable, match="no Ray GCS answered within 2 s") as caught:
        check_address(silent_listener, 2.0)
    assert time.monotonic() - started < 2.0 + 8  # the 2 s wait, plus slack for a loaded machine
    assert silent_listener in str(caught.value)


def test_a_dashboard_url_is_explained() -> None:
    with pytest.raises(ClusterUnreachable, match=r"HTTP address .* HOST:6379"):
        check_address("http://127.0.0.1:8265", 2.0)


def test_the_timeout_setting_lengthens_the_bound(silent_listener: str, tmp_path: Path) -> None:
    env = {**os.environ, "RAYSCRIBE_RAY_CONNECT_TIMEOUT": "4", "COLUMNS": "400"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "jobs.batch", str(SAMPLES / "jfk.mp3"), "--out",
                           str(tmp_path), "--address", silent_listener], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 2 and "within 4 s" in done.stderr, done.stderr
    assert 4 <= elapsed < BOUND_S


def test_a_running_gcs_passes_the_check(ray_cluster: RayHead) -> None:
    assert check_address(ray_cluster.address, 10.0) == ray_cluster.address


def test_a_job_on_a_python_without_ray_says_how_to_start_the_cluster(tmp_path: Path) -> None:
    """A cluster started outside the project's environment runs a job's `python` without Ray: one line saying so
    (``-S`` leaves out site-packages: this Python has no Ray, as that one)."""
    done = subprocess.run([sys.executable, "-S", "-m", "jobs.batch", str(SAMPLES), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert "has no ray" in done.stderr and "source .venv/bin/activate" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
