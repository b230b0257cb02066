"""The hybrid on the paths users take, on logical GPUs: the queue worker with Voxtral on pairs each Whisper worker
with a Voxtral worker on one GPU (a STRICT_PACK placement group per pair, made by the pool), its ``analyze`` jobs
run on the pair, and the automatic worker count leaves room for the Voxtral share; the Serve app pairs each model
replica the same way and the hybrid route answers from there; pairs that can never fit fail at once.

The session's cluster has no GPUs, so ``tests/hybrid_user_paths_driver.py`` runs in a subprocess with its own
local cluster of 6 CPUs and 2 logical GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fixtures_moto import unique_queue_env
from tests.test_queue_worker import run_cli, s3_json, s3_text, send

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"

pytestmark = pytest.mark.voxtral


@pytest.fixture(scope="module")
def hybrid(moto_server: Any, tiny_voxtral: Path) -> dict[str, Any]:
    env = {**unique_queue_env("hy"), "RAYSCRIBE_VOXTRAL_ENABLED": "true", "RAYSCRIBE_VOXTRAL_MODEL": str(tiny_voxtral),
           "RAYSCRIBE_VOXTRAL_MAX_NEW_TOKENS": "4", "RAYSCRIBE_HEARTBEAT_SECONDS": "3",
           "RAYSCRIBE_VISIBILITY_TIMEOUT": "60", "RAYSCRIBE_OUTPUT_FORMATS": "txt,json"}
    assert run_cli("infra", "up", env=env).returncode == 0
    bucket, out = env["RAYSCRIBE_INPUT_BUCKET"], f"s3://{env['RAYSCRIBE_OUTPUT_BUCKET']}/hybrid/"
    s3 = boto3.client("s3")
    s3.upload_file(str(SAMPLES / "jfk.mp3"), bucket, "in/jfk.mp3")
    s3.upload_file(str(SAMPLES / "LJ001-0001.wav"), bucket, "in/lj.wav")
    for job_id, key in (("hy-jfk", "in/jfk.mp3"), ("hy-lj", "in/lj.wav")):
        send(env["RAYSCRIBE_QUEUE_NAME"], json.dumps({"job_id": job_id, "s3_input_path": f"s3://{bucket}/{key}",
                                                      "s3_output_path": out, "analyze": True}))
    run = subprocess.run([sys.executable, "-m", "tests.hybrid_user_paths_driver"], cwd=REPO,
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"driver failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "out": out}


def _same_gpu(whisper: dict[str, Any], voxtral: dict[str, Any]) -> str:
    assert whisper["node_id"] == voxtral["node_id"]
    assert len(whisper["gpu_ids"]) == 1 and whisper["gpu_ids"] == voxtral["gpu_ids"], (whisper, voxtral)
    return str(whisper["gpu_ids"][0])


def test_the_queue_worker_pairs_each_whisper_worker_with_voxtral(hybrid: dict[str, Any]) -> None:
    pairs = hybrid["queue"]["pairs"]
    assert len(pairs) == 2  # 2 jobs queued; 2 logical GPUs hold 2 pairs of 0.5 + 0.5
    gpus = {_same_gpu(p["whisper"], p["voxtral"]) for p in pairs}
    assert len(gpus) == 2  # two pairs, two GPUs


def test_the_queue_analyze_jobs_run_on_the_pairs(hybrid: dict[str, Any]) -> None:
    report, out = hybrid["queue"]["report"], hybrid["out"]
    assert report["done"] == 2 and report["failed"] == 0, report
    assert "ask not what your country" in s3_text(f"{out}hy-jfk.txt").lower()
    for job_id in ("hy-jfk", "hy-lj"):
        metrics = s3_json(f"{out}{job_id}.metrics.json")
        assert metrics["analysis"]["status"] == "done", metrics
        _same_gpu(metrics["worker"], metrics["analysis"]["worker"])  # the job's Whisper and Voxtral shared its GPU
        assert s3_json(f"{out}{job_id}.analysis.json")["model"] == "tiny-voxtral"


def test_pairs_that_can_never_fit_fail_at_once(hybrid: dict[str, Any]) -> None:
    never = hybrid["never_fits"]
    assert never["error"] and never["seconds"] < 30
    assert "no GPU node, up or launchable, has room for a Whisper + Voxtral pair" in never["error"]


def test_serve_pairs_each_replica_and_the_hybrid_route_answers(hybrid: dict[str, Any]) -> None:
    served = hybrid["serve"]
    assert served["status"] == 200
    kinds = {e.get("type"): e for e in served["events"]}
    assert "ask not what your country" in kinds["transcript.done"]["text"].lower()
    assert kinds["analysis.done"]["model"] == "tiny-voxtral", served["events"]
    assert served["voxtral_deployments"] == []  # the partners replace the separate Voxtral deployment
    placements = served["placements"]
    assert len(placements) == 2
    gpus = {_same_gpu(p["replica"], p["partner"]) for p in placements}
    assert len(gpus) == 2
