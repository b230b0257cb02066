"""Run by ``test_serve_autoscaling.py`` in its own process: a separate Ray cluster with one *logical* GPU,
the app with 0.5 GPU per model replica and min 1 / max 2 replicas, a burst of concurrent requests, and
``serve.status()`` (what ``serve status`` prints) polled until a second replica runs and, after the load,
until it is gone. Prints one JSON line with what it saw.

A separate process because a process joins one Ray cluster, and the test session's cluster has no GPUs.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import ray
from ray import serve

from jobs.harness.ports import free_port
from rayscribe.config.serve import load_serve_settings
from rayscribe.config.settings import load_settings
from serve.app import build_app

CLIP = Path(__file__).resolve().parents[1] / "samples" / "jfk.mp3"
APP = "rayscribe-autoscale"


def running(name: str = "WhisperDeployment") -> int:
    status = serve.status().applications.get(APP)
    if status is None or name not in status.deployments:
        return 0
    return int(status.deployments[name].replica_states.get("RUNNING", 0))


def wait_for(predicate, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return round(time.monotonic() - started, 2)
        time.sleep(0.25)  # polling interval
    return None


def main() -> int:
    temp_dir = tempfile.mkdtemp(prefix="rs-as-")  # never the shared /tmp/ray of other clusters on this machine
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False,
             _temp_dir=temp_dir)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = load_settings(cpu_threads=1)
    serve_settings = load_serve_settings(
        min_replicas=1, max_replicas=2, target_ongoing_requests=1, upscale_delay_s=0.5, downscale_delay_s=2,
        look_back_period_s=12, gpu_per_replica=0.5, cpus_per_replica=1, max_batch_size=2,
    )
    serve.run(build_app(settings, serve_settings), name=APP, route_prefix="/")
    result: dict[str, object] = {"replicas_before": running(),
                                 "gpu_free_before": ray.available_resources().get("GPU", 0.0)}

    stop = threading.Event()
    counts = {"ok": 0, "other": 0}
    payload = CLIP.read_bytes()

    def load() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                r = client.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                                files={"file": ("jfk.mp3", payload)}, data={"model": "whisper-1"})
                counts["ok" if r.status_code == 200 else "other"] += 1

    threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    result["scale_up_s"] = wait_for(lambda: running() >= 2, 120)
    result["gpu_free_at_peak"] = ray.available_resources().get("GPU", 0.0)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    result["requests"] = dict(counts)
    result["scale_down_s"] = wait_for(lambda: running() == 1, 120)
    result["replicas_after"] = running()
    serve.shutdown()
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
