"""Run by ``test_hybrid_user_paths.py`` in its own process: a local Ray cluster with two *logical* GPUs (the test
session's cluster has none) and, on it, the hybrid as users reach it:

1. the queue worker (:func:`jobs.worker.run_worker`, ``--drain``) with Voxtral on, over the queues the environment
   names: its pool pairs each Whisper worker with a Voxtral worker on one GPU;
2. a pool whose pairs can never fit (bundles larger than any node): it must fail at once, not wait;
3. the Serve app with Voxtral on and two model replicas, each paired with its Voxtral worker; one request to the
   hybrid route.

Prints one ``RESULT {json}`` line with what it saw. Usage: ``python -m tests.hybrid_user_paths_driver``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from actors.pool import PoolError, WhisperPool
from jobs.harness.ports import free_port
from jobs.worker import run_worker
from rayscribe.config.queue import load_queue_settings
from rayscribe.config.serve import load_serve_settings
from rayscribe.config.settings import load_settings
from rayscribe.config.voxtral import load_voxtral_settings

CLIP = Path(__file__).resolve().parents[1] / "samples" / "jfk.mp3"


def queue_worker() -> dict[str, Any]:
    settings = load_settings(cpu_threads=1, batch_size=4, beam_size=1)
    pairs: list[dict[str, Any]] = []

    def on_loop(loop: Any) -> None:
        pool = loop.pool
        for slot in pool.slots:
            partner = pool.partner(slot)
            pairs.append({"whisper": slot.info, "voxtral": ray.get(partner.info.remote()) if partner else None})

    report = run_worker(settings, load_queue_settings(), drain=True, voxtral=load_voxtral_settings(),
                        on_loop=on_loop)
    return {"pairs": pairs, "report": report.to_dict()}


def never_fits() -> dict[str, Any]:
    """Pairs asking 8 CPUs per bundle on a 6-CPU cluster: an error at once, naming what is missing."""
    started = time.monotonic()
    try:
        WhisperPool(load_settings(), voxtral=load_voxtral_settings(hybrid_cpus=8)).start()
    except PoolError as exc:
        return {"error": str(exc), "seconds": time.monotonic() - started}
    return {"error": None, "seconds": time.monotonic() - started}


def serve_hybrid() -> dict[str, Any]:
    import httpx
    from ray import serve

    from serve.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = load_settings(cpu_threads=1, batch_size=4, beam_size=1)
    app = build_app(settings, load_serve_settings(min_replicas=2, max_replicas=2), load_voxtral_settings())
    serve.run(app, name="rayscribe", route_prefix="/")
    try:
        with CLIP.open("rb") as audio:
            response = httpx.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions/hybrid", timeout=300,
                                  files={"file": ("jfk.mp3", audio)}, data={"model": "whisper-1", "task": "summary"})
        events = [json.loads(line[6:]) for line in response.text.splitlines()
                  if line.startswith("data: {")]
        handle = serve.get_deployment_handle("WhisperDeployment", app_name="rayscribe")
        placements: dict[int, Any] = {}
        for _ in range(60):  # requests go to either replica: ask until both have answered
            placement = handle.placement.remote().result(timeout_s=120)
            placements[placement["replica"]["pid"]] = placement
            if len(placements) == 2:
                break
        return {"status": response.status_code, "events": events, "placements": list(placements.values()),
                "voxtral_deployments": [d for d in serve.status().applications["rayscribe"].deployments
                                        if d.startswith("Voxtral")]}
    finally:
        serve.shutdown()


def main() -> int:
    temp_dir = tempfile.mkdtemp(prefix="rs-hyu-")  # never the shared /tmp/ray of other clusters on this machine
    ray.init(address="local", num_cpus=6, num_gpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=temp_dir)
    result: dict[str, Any] = {}
    try:
        result["queue"] = queue_worker()
        result["never_fits"] = never_fits()
        result["serve"] = serve_hybrid()
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    print("RESULT " + json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
