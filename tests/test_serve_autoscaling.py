"""Autoscaling with logical GPUs: a burst brings a second model replica up, and it goes away after the load.

The session cluster has no GPUs, so this runs ``tests/serve_autoscale_driver.py`` in a subprocess that
starts its own Ray with one logical GPU (``num_gpus=1``); each model replica asks for 0.5 GPU, so the
second replica also shows fractional GPUs packing two replicas on one device. Replica counts come from
``serve.status()``, the API behind ``serve status``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_burst_scales_up_then_down() -> None:
    run = subprocess.run([sys.executable, "-m", "tests.serve_autoscale_driver"], cwd=REPO, env={**os.environ},
                         capture_output=True, text=True, timeout=420)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["replicas_before"] == 1
    assert result["gpu_free_before"] == 0.5
    assert result["scale_up_s"] is not None, result
    assert result["gpu_free_at_peak"] == 0.0, result
    assert result["requests"]["ok"] > 0 and result["requests"]["other"] == 0, result
    assert result["scale_down_s"] is not None and result["replicas_after"] == 1, result
