"""Run by ``test_hybrid.py`` in its own process: a separate local Ray cluster with two *logical* GPUs (the test
session's cluster has none), two hybrid groups on it, one hybrid request, and one JSON line with what it saw.

Usage: ``python -m tests.hybrid_placement_driver TINY_VOXTRAL_DIR``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import ray

from actors.hybrid import HybridGroup
from rayscribe.config.settings import load_settings
from rayscribe.config.voxtral import load_voxtral_settings
from rayscribe.engines.voxtral_engine import AnalyzeOptions

CLIP = Path(__file__).resolve().parents[1] / "samples" / "jfk.mp3"


def main(model: str) -> int:
    temp_dir = tempfile.mkdtemp(prefix="rs-hy-")  # never the shared /tmp/ray of other clusters on this machine
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=temp_dir)
    settings = load_settings(cpu_threads=1, batch_size=4, beam_size=1)
    vsettings = load_voxtral_settings(voxtral_model=model, voxtral_max_new_tokens=4, voxtral_cpus=1)
    groups = [HybridGroup(settings, vsettings) for _ in range(2)]
    result: dict[str, object] = {"bundles": groups[0].bundles}
    try:
        for group in groups:
            group.launch(timeout=120)
        result["groups"] = [group.wait_ready(timeout=300) for group in groups]
        result["gpu_free"] = ray.available_resources().get("GPU", 0.0)
        events = []
        for event in groups[0].run(CLIP.read_bytes(), "jfk.mp3", AnalyzeOptions(task="summary")):
            events.append({"kind": event.kind, "seconds": round(event.seconds, 3),
                           "text": event.transcript.transcript.text if event.transcript and event.transcript.ok
                           else None, "analysis": event.analysis or None})
        result["events"] = events
        result["memory"] = groups[0].memory()
    finally:
        for group in groups:
            group.stop()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
