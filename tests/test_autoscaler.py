"""The autoscaling policy actor on real Ray with moto's SQS, and the whole loop on Ray's fake multi-node provider.

The end-to-end test runs ``jobs/bench_autoscale.py`` in a subprocess (a process joins one Ray cluster, and this
one needs an autoscaling head of its own): short real clips are queued, the policy asks for GPUs, fake GPU nodes
start, Whisper workers (tiny.en on the CPU, holding the logical GPU) drain the queue, and after the idle timeout the
policy asks for nothing and the nodes go. It also reads the head's Prometheus export for every rayscribe metric.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fixtures_moto import MotoServer
from tests.speech import require_speech


def test_policy_actor_reads_the_queues_and_logs_its_decision(ray_connected, moto: MotoServer,
                                                             queue_names: dict[str, str]) -> None:
    import ray

    from actors.autoscaler import start_autoscaler
    from rayscribe.config.queue import load_queue_settings
    from rayscribe.config.scaling import load_scaling_settings
    from rayscribe.config.settings import load_settings
    from rayscribe.queue import infra
    from rayscribe.queue.sqs import JobQueue

    qs = load_queue_settings()
    infra.up(qs)
    JobQueue(qs).send("normal", ['{"job_id": "a"}'] * 3)
    JobQueue(qs).send("high", ['{"job_id": "b"}'])
    settings = load_settings(gpu_per_worker=0.5, device="auto")
    scaling = load_scaling_settings(scaling_poll_interval=3600, scaling_job_seconds_prior=600,
                                    scaling_throughput_prior=1, scaling_target_drain_seconds=600)
    actor = start_autoscaler(settings, qs, scaling)
    try:
        decision = ray.get(actor.tick.remote(), timeout=60)
        # 4 jobs x 600 s / (1 x 600 s) = 4 GPUs, capped at 4 x 0.5 (one worker per job) = 2 GPUs, 4 workers
        assert decision["counts"] == {"main_visible": 3, "main_inflight": 0, "high_visible": 1, "high_inflight": 0}
        assert (decision["desired_gpus"], decision["desired_workers"]) == (2, 4), decision
        # the actor's own loop may have polled first; either way the first decision scaled up, with its inputs
        first = ray.get(actor.decisions.remote())[0]
        assert first["reason"].startswith("scale up") and first["counts"] == decision["counts"], first
        assert ray.get(actor.desired_workers.remote()) == 4
    finally:
        ray.get(actor.stop.remote(), timeout=60)
        ray.kill(actor)


def test_autoscaling_refuses_cpu_workers_with_the_fix(ray_connected) -> None:
    from actors.autoscaler import start_autoscaler
    from actors.pool import PoolError
    from rayscribe.config.queue import load_queue_settings
    from rayscribe.config.scaling import load_scaling_settings
    from rayscribe.config.settings import load_settings

    with pytest.raises(PoolError, match="RAYSCRIBE_DEVICE to auto or cuda"):
        start_autoscaler(load_settings(device="cpu"), load_queue_settings(), load_scaling_settings())


def test_backlog_brings_fake_gpu_nodes_up_and_idle_lets_them_go(moto: MotoServer, queue_names: dict[str, str],
                                                                tmp_path: Path) -> None:
    require_speech()
    out = tmp_path / "autoscale.json"
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "jobs.bench_autoscale", "--jobs", "4", "--idle-timeout", "3",
                          "--json", str(out)], cwd=REPO, env={**os.environ}, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    result = json.loads(out.read_text())
    times = result["times"]
    print(f"autoscaling e2e in {time.monotonic() - started:.0f} s: {json.dumps(result)}")
    assert result["outcomes"]["done"] == 4 and result["outcomes"]["failed"] == 1, result  # 1 malformed message
    assert times["first_scale_up_decision"] is not None and times["first_node"] is not None, times
    assert result["peak_gpus"] >= 1 and result["peak_workers"] >= 1, result
    assert times["drained"] is not None and times["request_zero"] is not None, times
    assert times["released"] is not None and times["released"] >= times["request_zero"], times
    assert result["decision_changes"][0]["desired_gpus"] == 0  # idle before the backlog
    assert any(c["reason"].startswith("scale up") for c in result["decision_changes"]), result["decision_changes"]
    assert result["decision_changes"][-1]["desired_gpus"] == 0
    assert result["metrics_missing"] == [], result["metrics_found"]
