"""The queue path with analysis: `rayscribe worker` (a real process) on the session's Ray cluster with the tiny
Voxtral, moto for SQS and S3. One job's analysis succeeds (analysis.json beside its transcript); the other's fails
inside Voxtral (its audio is over RAYSCRIBE_VOXTRAL_MAX_AUDIO_SECONDS for a summary): its transcript is kept and
its job record says why the analysis failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fixtures_moto import unique_queue_env
from tests.test_queue_worker import run_cli, s3_json, s3_keys, s3_text, send

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

pytestmark = pytest.mark.voxtral


@pytest.fixture(scope="module")
def analyzed(ray_cluster: Any, moto_server: Any, tiny_voxtral: Path) -> dict[str, Any]:
    env = {**unique_queue_env("vx"), "RAYSCRIBE_VOXTRAL_ENABLED": "true", "RAYSCRIBE_VOXTRAL_MODEL": str(tiny_voxtral),
           "RAYSCRIBE_VOXTRAL_MAX_NEW_TOKENS": "4", "RAYSCRIBE_VOXTRAL_MAX_AUDIO_SECONDS": "10",
           "RAYSCRIBE_VOXTRAL_CPUS": "1", "RAYSCRIBE_HEARTBEAT_SECONDS": "3", "RAYSCRIBE_VISIBILITY_TIMEOUT": "60"}
    assert run_cli("infra", "up", env=env).returncode == 0
    in_bucket, out = env["RAYSCRIBE_INPUT_BUCKET"], f"s3://{env['RAYSCRIBE_OUTPUT_BUCKET']}/transcripts/"
    s3 = boto3.client("s3")
    s3.upload_file(str(SAMPLES / "LJ001-0001.wav"), in_bucket, "raw/lj.wav")  # 9.7 s
    s3.upload_file(str(SAMPLES / "jfk.mp3"), in_bucket, "raw/jfk.mp3")  # 11 s: over the 10 s summary limit
    send(env["RAYSCRIBE_QUEUE_NAME"], json.dumps({
        "job_id": "vx-ok", "s3_input_path": f"s3://{in_bucket}/raw/lj.wav", "s3_output_path": out,
        "analyze": "What is this recording about?", "formats": ["txt", "json"]}))
    send(env["RAYSCRIBE_QUEUE_NAME"], json.dumps({
        "job_id": "vx-fail", "s3_input_path": f"s3://{in_bucket}/raw/jfk.mp3", "s3_output_path": out,
        "analyze": True, "formats": ["txt"]}))
    proc = run_cli("worker", "--drain", "--address", ray_cluster.address, "--workers", "1", env=env, timeout=400)
    return {"env": env, "out": out, "proc": proc}


def test_worker_finishes_both_jobs(analyzed: dict[str, Any]) -> None:
    proc = analyzed["proc"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    assert "Voxtral worker ready: tiny-voxtral" in proc.stderr


def test_analysis_json_beside_the_transcript(analyzed: dict[str, Any]) -> None:
    out = analyzed["out"]
    assert "printing" in s3_text(f"{out}vx-ok.txt").lower()  # the transcript is Whisper's, unaffected
    analysis = s3_json(f"{out}vx-ok.analysis.json")
    assert analysis["job_id"] == "vx-ok" and analysis["task"] == "question"
    assert analysis["prompt"] == "What is this recording about?" and analysis["model"] == "tiny-voxtral"
    assert 1 <= analysis["output_tokens"] <= 4 and isinstance(analysis["text"], str)
    metrics = s3_json(f"{out}vx-ok.metrics.json")
    assert metrics["analysis"]["status"] == "done" and metrics["analysis"]["path"] == f"{out}vx-ok.analysis.json"


def test_voxtral_failure_keeps_the_transcript(analyzed: dict[str, Any]) -> None:
    out = analyzed["out"]
    assert "ask not what your country" in s3_text(f"{out}vx-fail.txt").lower()
    metrics = s3_json(f"{out}vx-fail.metrics.json")
    assert metrics["analysis"]["status"] == "failed"
    assert "covers at most 10 s" in metrics["analysis"]["error"]
    assert s3_json(f"{out}vx-fail.done.json")["status"] == "done"
    assert "transcripts/vx-fail.analysis.json" not in s3_keys(analyzed["env"]["RAYSCRIBE_OUTPUT_BUCKET"])
