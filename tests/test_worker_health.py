"""The queue worker's health endpoint and queue gauges, as an operator runs it: `rayscribe worker` (a real process,
no --autoscale) on the session's cluster against moto, its ``GET /health`` asked as its workers die, and the
``rayscribe_queue_messages`` gauges read from the cluster's Prometheus export."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from jobs.harness.ports import free_port
from rayscribe.config.queue import load_queue_settings
from rayscribe.queue import infra
from rayscribe.queue.sqs import JobQueue
from tests.fixtures_moto import unique_queue_env
from tests.speech import REPO, SAMPLES

RAYSCRIBE = str(Path(sys.executable).parent / "rayscribe")
HEALTHCHECK = REPO / "docker" / "healthcheck.py"
PREDECESSOR_FIELDS = ("status", "timestamp", "uptime", "gpu_available", "worker_running", "container_id")


def _poll(check: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)  # polling interval
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}: {last}\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def worker(ray_cluster: Any, moto_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`rayscribe worker --workers 2` (simulated engine) with its health endpoint on a free port; one job on jfk
    in its queue and two messages in its dead-letter queue. Shared: the gauges are read first, then the health
    test kills the workers."""
    env = {**unique_queue_env("health"), "RAYSCRIBE_BACKEND": "simulated", "RAYSCRIBE_SIMULATED_SPEED": "50",
           "RAYSCRIBE_CPUS_PER_WORKER": "0.1", "RAYSCRIBE_OUTPUT_FORMATS": "txt", "RAYSCRIBE_WAIT_SECONDS": "1",
           "RAYSCRIBE_HEALTH_PORT": str(free_port()), "RAYSCRIBE_QUEUE_GAUGE_SECONDS": "1"}
    qs = load_queue_settings(**{k.removeprefix("RAYSCRIBE_").lower(): v for k, v in env.items()
                                if k in ("RAYSCRIBE_QUEUE_NAME", "RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME",
                                         "RAYSCRIBE_DLQ_NAME", "RAYSCRIBE_INPUT_BUCKET", "RAYSCRIBE_OUTPUT_BUCKET")})
    infra.up(qs)
    boto3.client("s3").upload_file(str(SAMPLES / "jfk.mp3"), qs.input_bucket, "raw/jfk.mp3")
    queue = JobQueue(qs)
    queue.send("normal", [json.dumps({"job_id": "h1", "s3_input_path": f"s3://{qs.input_bucket}/raw/jfk.mp3",
                                      "s3_output_path": f"s3://{qs.output_bucket}/t/"})])
    queue.send("dlq", ['{"job_id": "dead-1"}', '{"job_id": "dead-2"}'])
    log = tmp_path_factory.mktemp("health") / "worker.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([RAYSCRIBE, "worker", "--address", ray_cluster.address, "--workers", "2"],
                                stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, text=True,
                                env={**os.environ, **env})
    try:
        yield {"proc": proc, "log": log, "url": f"http://127.0.0.1:{env['RAYSCRIBE_HEALTH_PORT']}/health",
               "port": env["RAYSCRIBE_HEALTH_PORT"]}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def _health(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(url, timeout=15)
    return response.status_code, response.json()


def _docker_healthcheck(port: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK as the container runs it, in worker mode."""
    (state_dir / "rayscribe-mode").write_text(f"worker {os.getpid()}\n")
    return subprocess.run([sys.executable, str(HEALTHCHECK)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RAYSCRIBE_STATE_DIR": str(state_dir), "RAYSCRIBE_HEALTH_PORT": port})


def test_plain_worker_exports_queue_gauges(worker: dict[str, Any], ray_cluster: Any) -> None:
    """Without --autoscale, the worker exports main, high and dead-letter depths, visible and in flight."""
    pattern = re.compile(r'^ray_rayscribe_queue_messages\{([^}]*)\} (\S+)$', re.M)

    def gauges() -> dict[tuple[str, str], float]:
        text = httpx.get(f"http://127.0.0.1:{ray_cluster.metrics_port}/metrics", timeout=10).text
        found = {}
        for labels, value in pattern.findall(text):
            tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            found[(tags.get("queue", ""), tags.get("state", ""))] = float(value)
        wanted = {(q, s) for q in ("main", "high", "dlq") for s in ("visible", "inflight")}
        return found if wanted <= set(found) and found[("dlq", "visible")] == 2 else {}

    found = _poll(gauges, 120, "the queue gauges", worker["log"])
    assert found[("high", "visible")] == 0 and found[("high", "inflight")] == 0
    assert worker["proc"].poll() is None  # exported by the running worker, not left over from another


def test_worker_health_goes_healthy_degraded_unhealthy(worker: dict[str, Any], tmp_path: Path) -> None:
    url, log = worker["url"], worker["log"]
    # Answers while starting (unhealthy, 503): the container's start period covers it.
    code, body = _poll(lambda: _health(url), 120, "the health endpoint to answer", log)
    assert code in (200, 503) and body["mode"] == "worker"

    def healthy_with_the_job_done() -> Any:
        code, body = _health(url)
        return (code, body) if body["status"] == "healthy" and body["jobs_done"] == 1 else None

    code, body = _poll(healthy_with_the_job_done, 240, "healthy with one job done", log)
    assert code == 200
    for key in PREDECESSOR_FIELDS:
        assert key in body, body
    assert body["worker_running"] is True and body["gpu_available"] is False and body["container_id"]
    assert body["workers"] == {"wanted": 2, "up": 2} and body["reasons"] == []
    assert body["voxtral"] == "off" and body["jobs_failed"] == 0 and body["last_job_finished"]
    assert body["models"] == ["tiny.en"] and body["engine"]["backend"] == "simulated"
    assert _docker_healthcheck(worker["port"], tmp_path).returncode == 0

    pids = [w["pid"] for w in body["worker_processes"]]
    assert len(pids) == 2
    os.kill(pids[0], signal.SIGKILL)  # one Whisper worker dies
    code, body = _poll(lambda: (lambda r: r if r[1]["status"] == "degraded" else None)(_health(url)), 60,
                       "degraded", log)
    assert code == 200 and body["workers"] == {"wanted": 2, "up": 1} and body["worker_running"] is True
    assert "1 of 2 Whisper worker(s) down" in body["reasons"][0]
    check = _docker_healthcheck(worker["port"], tmp_path)
    assert check.returncode == 0 and "degraded" in check.stdout  # it still works: the container stays

    os.kill(pids[1], signal.SIGKILL)  # and the other: nothing can transcribe
    code, body = _poll(lambda: (lambda r: r if r[1]["status"] == "unhealthy" else None)(_health(url)), 60,
                       "unhealthy", log)
    assert code == 503 and body["workers"]["up"] == 0 and body["worker_running"] is False
    check = _docker_healthcheck(worker["port"], tmp_path)
    assert check.returncode == 1 and "unhealthy" in check.stderr
