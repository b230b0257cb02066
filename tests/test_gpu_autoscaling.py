"""GPU demand on a fresh autoscaling cluster, for every way in: a head with no GPU and a GPU node type at 0
running (Ray's fake multi-node provider, jobs/harness/fake_autoscaling.py). ``ray job submit`` of jobs.batch,
``rayscribe transcribe --address``, ``rayscribe worker --address`` (no ``--autoscale``) and ``rayscribe serve
--address`` each make the autoscaler start a GPU node; their Whisper actors run there (never on the head) and the
transcripts are right.

The fake GPU nodes have no CUDA: the workers hold their GPU share and, with ``RAYSCRIBE_DEVICE=auto``, compute on
CPU. One cluster for the module (each test waits until the previous test's GPU nodes are gone, so each brings up
its own); the real tiny.en model on short clips.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from jobs.harness.fake_autoscaling import FakeAutoscalingCluster
from tests.conftest import free_port
from tests.fixtures_moto import unique_queue_env
from tests.test_queue_worker import run_cli, s3_text, send

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
RAYSCRIBE = str(Path(sys.executable).parent / "rayscribe")
JFK = "ask not what your country can do for you"
LJ = "printing"


@pytest.fixture(scope="module")
def fake_gpu() -> Iterator[FakeAutoscalingCluster]:
    """A CPU head (2 CPUs, no GPU) whose autoscaler may launch up to 2 nodes of 2 CPUs + 1 GPU."""
    cluster = FakeAutoscalingCluster(head_cpus=2, node_resources={"CPU": 2}, max_gpu_nodes=2,
                                     idle_timeout_minutes=0.05, dashboard=True, ports_ahead=True)
    try:
        cluster.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield cluster
    cluster.stop()


def _env(cluster: FakeAutoscalingCluster, **extra: str) -> dict[str, str]:
    env = {**os.environ, "RAYSCRIBE_AUTOSCALING_CONFIG": str(cluster.config_path), "RAYSCRIBE_CPU_THREADS": "1",
           "RAYSCRIBE_GPU_WAIT_SECONDS": "400", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _nodes(cluster: FakeAutoscalingCluster) -> list[Any]:
    from ray.util.state import list_nodes

    return [n for n in list_nodes(address=cluster.dashboard_url, limit=100, detail=True) if n.state == "ALIVE"]


def _no_gpu_nodes(cluster: FakeAutoscalingCluster, timeout: float = 240.0) -> str:
    """Wait until the autoscaler has removed the GPU nodes an earlier test brought up; the head's node id."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = _nodes(cluster)
        if not any(n.resources_total.get("GPU", 0) > 0 for n in nodes):
            return next(n.node_id for n in nodes if n.is_head_node)
        assert time.monotonic() < deadline, "the GPU nodes of an earlier test were not removed"
        time.sleep(1.0)  # polling the state API


def _actors(cluster: FakeAutoscalingCluster, class_name: str) -> dict[str, str]:
    """Actor id -> node id of every actor of ``class_name`` the cluster has seen (dead ones included)."""
    from ray.util.state import list_actors

    found = list_actors(address=cluster.dashboard_url, filters=[("class_name", "=", class_name)], limit=1000,
                        detail=True)
    return {a.actor_id: a.node_id for a in found}


def _check_placed_on_gpu_nodes(cluster: FakeAutoscalingCluster, class_name: str, before: dict[str, str],
                               head: str) -> list[str]:
    """The new actors of ``class_name`` ran on GPU nodes, none on the head; their node ids."""
    from ray.util.state import list_nodes

    new = {a: n for a, n in _actors(cluster, class_name).items() if a not in before}
    assert new, f"no {class_name} actor was started"
    gpu_nodes = {n.node_id for n in list_nodes(address=cluster.dashboard_url, limit=100, detail=True)
                 if n.resources_total.get("GPU", 0) > 0}
    for actor, node in new.items():
        assert node != head, f"{class_name} {actor} ran on the CPU head"
        assert node in gpu_nodes, f"{class_name} {actor} ran on {node}, not a GPU node"
    return list(new.values())


def test_ray_job_submit_of_the_batch_job_brings_up_a_gpu_node(fake_gpu: FakeAutoscalingCluster,
                                                               tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    head = _no_gpu_nodes(fake_gpu)
    before = _actors(fake_gpu, "WhisperWorker")
    out = tmp_path / "out"
    client = JobSubmissionClient(fake_gpu.dashboard_url)
    job = client.submit_job(entrypoint=f"cd {REPO} && {sys.executable} -m jobs.batch {SAMPLES / 'jfk.mp3'} "
                                       f"{SAMPLES / 'LJ001-0001.wav'} --out {out} --format txt,json",
                            runtime_env={"env_vars": {"RAYSCRIBE_CPU_THREADS": "1"}})
    deadline = time.monotonic() + 480
    while (status := client.get_job_status(job)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(1.0)  # polling the Jobs API
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "on 2 worker(s)" in logs  # 2 files: the work bounds what the autoscaler could hold (4)
    assert JFK in (out / "jfk.txt").read_text().lower()
    assert LJ in (out / "LJ001-0001.txt").read_text().lower()
    nodes = _check_placed_on_gpu_nodes(fake_gpu, "WhisperWorker", before, head)
    assert len(nodes) == 2
    summary = json.loads((out / "jfk.json").read_text())
    assert summary  # the transcript JSON is written


def test_rayscribe_transcribe_address_brings_up_a_gpu_node(fake_gpu: FakeAutoscalingCluster,
                                                           tmp_path: Path) -> None:
    head = _no_gpu_nodes(fake_gpu)
    before = _actors(fake_gpu, "WhisperWorker")
    run = subprocess.run([RAYSCRIBE, "transcribe", str(SAMPLES / "jfk.mp3"), "--out", str(tmp_path),
                          "--address", fake_gpu.address], capture_output=True, text=True, timeout=480, cwd=REPO,
                         env=_env(fake_gpu))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert JFK in (tmp_path / "jfk.txt").read_text().lower()
    assert len(_check_placed_on_gpu_nodes(fake_gpu, "WhisperWorker", before, head)) == 1  # 1 file, 1 worker


def test_rayscribe_worker_address_brings_up_a_gpu_node(fake_gpu: FakeAutoscalingCluster,
                                                       moto_server: Any) -> None:
    head = _no_gpu_nodes(fake_gpu)
    before = _actors(fake_gpu, "WhisperWorker")
    env = {**unique_queue_env("gpu"), "RAYSCRIBE_VISIBILITY_TIMEOUT": "60", "RAYSCRIBE_HEARTBEAT_SECONDS": "3"}
    assert run_cli("infra", "up", env=env).returncode == 0
    bucket, out = env["RAYSCRIBE_INPUT_BUCKET"], f"s3://{env['RAYSCRIBE_OUTPUT_BUCKET']}/gpu/"
    boto3.client("s3").upload_file(str(SAMPLES / "jfk.mp3"), bucket, "in/jfk.mp3")
    send(env["RAYSCRIBE_QUEUE_NAME"], json.dumps({"job_id": "gpu-1", "s3_input_path": f"s3://{bucket}/in/jfk.mp3",
                                                  "s3_output_path": out, "formats": ["txt"]}))
    proc = run_cli("worker", "--drain", "--address", fake_gpu.address, env={**_env(fake_gpu), **env}, timeout=480)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert JFK in s3_text(f"{out}gpu-1.txt").lower()
    assert len(_check_placed_on_gpu_nodes(fake_gpu, "WhisperWorker", before, head)) == 1  # 1 job queued


def _wait_for_api(proc: subprocess.Popen, port: int, log_path: Path, timeout: float = 400.0) -> None:
    """Until the API answers /health with the model up, or the server process ends (then fail with its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"rayscribe serve ended:\n{log_path.read_text()[-3000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)  # polling the server
    pytest.fail(f"the API did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def test_rayscribe_serve_address_brings_up_a_gpu_node(fake_gpu: FakeAutoscalingCluster, tmp_path: Path) -> None:
    head = _no_gpu_nodes(fake_gpu)
    replica = "ServeReplica:rayscribe:WhisperDeployment"
    before = _actors(fake_gpu, replica)
    port = free_port()
    env = _env(fake_gpu, RAYSCRIBE_SERVE_PORT=str(port), RAYSCRIBE_MAX_REPLICAS="1", RAYSCRIBE_SERVE_PROXY="serve",
               RAYSCRIBE_API_KEYS="")
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([RAYSCRIBE, "serve", "--address", fake_gpu.address], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_api(proc, port, log_path)
            with (SAMPLES / "jfk.mp3").open("rb") as audio:
                response = httpx.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions", timeout=300,
                                      files={"file": ("jfk.mp3", audio)}, data={"model": "whisper-1"})
            assert response.status_code == 200, response.text
            assert JFK in response.json()["text"].lower()
            _check_placed_on_gpu_nodes(fake_gpu, replica, before, head)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert "Traceback" not in log_path.read_text()
