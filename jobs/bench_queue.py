"""Queue path against batch path on the same short files: both as whole ``rayscribe`` commands a user runs.

The shared clips go to moto (S3 + SQS) as predecessor-shaped messages (``{"job_id", "s3_input_path",
"s3_output_path", "priority"}``), then ``rayscribe worker --drain --workers N`` is timed from start to exit
(embedded Ray, pool start and model loads included); ``rayscribe transcribe <files> --out DIR --workers N`` is
timed the same way on the same clips. Issue 18 item 8 asks for the queue run within 10 % of the batch run.
Called by ``python -m jobs.benchmark`` (``--only queue`` runs just this comparison).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.harness.audio import Clip
from jobs.harness.env import patched_environ
from jobs.harness.moto import moto_environment, unique_queue_env
from jobs.harness.processes import timed_command
from rayscribe.transcript import Transcript

QUEUE_TARGET = 1.10  # queue wall / batch wall
BIN = Path(sys.executable).parent


def _command_env(names: dict[str, str]) -> dict[str, str]:
    """This process's environment (offline, AWS_* at moto) with the run's queue names and an embedded Ray."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYSCRIBE_RAY_ADDRESS")}
    return {"RAYSCRIBE_HEALTH_PORT": "0", **env, **names}  # no fixed port (8080) a neighbour may hold


def _send_jobs(clips: Sequence[Clip], names: dict[str, str]) -> dict[str, Clip]:
    """Upload the clips and send one predecessor-shaped message per clip; job id -> clip."""
    import boto3

    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    in_bucket, out_bucket = names["RAYSCRIBE_INPUT_BUCKET"], names["RAYSCRIBE_OUTPUT_BUCKET"]
    url = sqs.get_queue_url(QueueName=names["RAYSCRIBE_QUEUE_NAME"])["QueueUrl"]
    jobs: dict[str, Clip] = {}
    bodies = []
    for i, clip in enumerate(clips):
        job_id = f"bench-{i:03d}"
        key = f"uploads/{clip.path.parent.name}/{clip.path.name}"
        s3.upload_file(str(clip.path), in_bucket, key)
        bodies.append(json.dumps({"job_id": job_id, "s3_input_path": f"s3://{in_bucket}/{key}",
                                  "s3_output_path": f"s3://{out_bucket}/transcripts/", "priority": "normal"}))
        jobs[job_id] = clip
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[start:start + 10])]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return jobs


def _queue_texts(jobs: dict[str, Clip], out_bucket: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3")
    texts = []
    for job_id in jobs:
        try:
            data = json.loads(s3.get_object(Bucket=out_bucket, Key=f"transcripts/{job_id}.json")["Body"].read())
            texts.append(Transcript.from_dict(data).text)
        except s3.exceptions.NoSuchKey:
            texts.append("")
    return texts


def _batch_texts(clips: Sequence[Clip], out_dir: Path) -> list[str]:
    from rayscribe.file_jobs import discover_inputs

    stems = {str(i.path): i.stem for i in discover_inputs([str(c.path) for c in clips])}
    texts = []
    for clip in clips:
        path = out_dir / f"{stems.get(str(clip.path), clip.path.stem)}.json"
        texts.append(Transcript.from_dict(json.loads(path.read_text())).text if path.exists() else "")
    return texts


def queue_vs_batch(clips: Sequence[Clip], work: Path, workers: int = 2) -> dict[str, dict[str, Any]]:
    """Time both whole commands on ``clips``; returns {"queue": run, "batch": run} in ``jobs.benchmark``'s run
    shape (start-up is inside the wall time: ``startup_seconds`` is 0)."""
    from jobs.benchmark import ProcessSampler

    work.mkdir(parents=True, exist_ok=True)
    rayscribe = str(BIN / "rayscribe")
    runs: dict[str, dict[str, Any]] = {}
    with moto_environment(work) as moto:
        names = unique_queue_env("bench")
        env = _command_env(names)
        subprocess.run([rayscribe, "infra", "up"], env=env, check=True, capture_output=True, text=True, timeout=120)
        with patched_environ(names):
            jobs = _send_jobs(clips, names)
        with ProcessSampler() as sampler:
            wall = timed_command([rayscribe, "worker", "--drain", "--workers", str(workers)], env, work / "worker.log")
        texts = _queue_texts(jobs, names["RAYSCRIBE_OUTPUT_BUCKET"])
        runs["queue"] = {"startup_seconds": 0.0, "wall_seconds": wall, "texts": texts,
                         "failed": sum(1 for t in texts if not t), "peak_rss_mb": sampler.peak_all_mb,
                         "cpu_seconds": sampler.cpu_seconds,
                         "extra": {"command": f"rayscribe worker --drain --workers {workers}",
                                   "moto": moto.url, "messages": len(jobs)}}
    out_dir = work / "batch-out"
    with ProcessSampler() as sampler:
        wall = timed_command([rayscribe, "transcribe", *[str(c.path) for c in clips], "--out", str(out_dir),
                              "--workers", str(workers)], _command_env({}), work / "transcribe.log")
    texts = _batch_texts(clips, out_dir)
    runs["batch"] = {"startup_seconds": 0.0, "wall_seconds": wall, "texts": texts,
                     "failed": sum(1 for t in texts if not t), "peak_rss_mb": sampler.peak_all_mb,
                     "cpu_seconds": sampler.cpu_seconds,
                     "extra": {"command": f"rayscribe transcribe <{len(clips)} files> --out DIR --workers {workers}"}}
    return runs


def queue_ratio(rows: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """queue wall / batch wall (whole commands) against the target, with both WERs."""
    queue = next((r for r in rows if r.scenario == "queue_vs_batch" and r.contender == "rayscribe worker"), None)
    batch = next((r for r in rows if r.scenario == "queue_vs_batch" and r.contender == "rayscribe transcribe"), None)
    if queue is None or batch is None or batch.wall_seconds <= 0:
        return {}
    ratio = round(queue.wall_seconds / batch.wall_seconds, 3)
    return {"queue_vs_batch": {"queue_wall_seconds": queue.wall_seconds, "batch_wall_seconds": batch.wall_seconds,
                               "queue_over_batch": ratio, "target": QUEUE_TARGET, "met": ratio <= QUEUE_TARGET,
                               "queue_wer": queue.wer, "batch_wer": batch.wer}}
