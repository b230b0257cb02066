"""Hybrid placement with logical GPUs: a Whisper and a Voxtral worker share one node and one GPU id, and two
hybrid groups on a two-GPU node don't share a GPU. The session's cluster has no GPUs, so this runs
``tests/hybrid_placement_driver.py`` in a subprocess with its own two-GPU local cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.hybrid import hybrid_bundles
from rayscribe.config.voxtral import load_voxtral_settings

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.voxtral


def test_bundles_follow_settings() -> None:
    settings = load_voxtral_settings(hybrid_whisper_gpu=0.4, hybrid_voxtral_gpu=0.6, hybrid_cpus=2)
    assert hybrid_bundles(settings, use_gpu=True) == [{"CPU": 2, "GPU": 0.4}, {"CPU": 2, "GPU": 0.6}]
    assert hybrid_bundles(settings, use_gpu=False) == [{"CPU": 2}, {"CPU": 2}]


@pytest.fixture(scope="module")
def placement(tiny_voxtral: Path) -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-m", "tests.hybrid_placement_driver", str(tiny_voxtral)], cwd=REPO,
                         env={**os.environ}, capture_output=True, text=True, timeout=480)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"driver failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


def test_one_group_shares_a_node_and_a_gpu(placement: dict[str, Any]) -> None:
    assert placement["bundles"] == [{"CPU": 1.0, "GPU": 0.5}, {"CPU": 1.0, "GPU": 0.5}]
    for group in placement["groups"]:
        whisper, voxtral = group["whisper"], group["voxtral"]
        assert whisper["node_id"] == voxtral["node_id"]
        assert len(whisper["gpu_ids"]) == 1 and whisper["gpu_ids"] == voxtral["gpu_ids"]
        assert voxtral["model"] == "tiny-voxtral" and whisper["model"] == "tiny.en"
    assert placement["gpu_free"] == 0.0  # 2 groups x (0.5 + 0.5) fill both logical GPUs


def test_two_groups_use_different_gpus(placement: dict[str, Any]) -> None:
    first, second = (group["whisper"]["gpu_ids"][0] for group in placement["groups"])
    assert first != second


def test_both_halves_come_back(placement: dict[str, Any]) -> None:
    events = {e["kind"]: e for e in placement["events"]}
    assert set(events) == {"transcript", "analysis"}
    assert "ask not what your country can do for you" in events["transcript"]["text"].lower()
    analysis = events["analysis"]["analysis"]
    assert analysis["status"] == "done" and analysis["analysis"]["task"] == "summary"
    assert analysis["analysis"]["output_tokens"] <= 4
    memory = placement["memory"]
    assert memory["whisper"]["rss_bytes"] > 0 and memory["voxtral"]["rss_bytes"] > 0
