"""The soak harness and what it leans on: the simulated engine, the ingest loop's worker replacement, and a short
soak (`python -m jobs.soak`, the same entrypoint as the full run) with faults injected."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.harness.audio import wav_bytes
from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.config.settings import load_settings
from rayscribe.engines import TranscribeOptions, create_engine
from rayscribe.engines.simulated_engine import simulated_transcript
from rayscribe.errors import AudioDecodeError
from rayscribe.formatters import format_transcript

REPO = Path(__file__).resolve().parents[1]


def _wav(seconds: float) -> bytes:
    return wav_bytes(np.sin(np.arange(int(seconds * SAMPLE_RATE)) / 20) * 8000 / 32767)


def test_simulated_engine_takes_audio_time_over_speed_and_gives_a_fixed_transcript() -> None:
    engine = create_engine(load_settings(backend="simulated", simulated_speed=20, simulated_segment_seconds=5))
    audio = decode_audio(_wav(12.0))
    started = time.perf_counter()
    transcript = engine.transcribe(audio, TranscribeOptions())
    elapsed = time.perf_counter() - started
    assert elapsed >= 12.0 / 20
    assert transcript == simulated_transcript(12.0, 5.0)
    assert [(s.start, s.end) for s in transcript.segments] == [(0.0, 5.0), (5.0, 10.0), (10.0, 12.0)]
    assert transcript.text.split() == ["simulated"] * 24 and len(transcript.words) == 24
    assert engine.describe()["backend"] == "simulated" and engine.describe()["model"] == "simulated"
    for fmt in ("txt", "srt", "vtt", "json", "verbose_json"):
        assert "simulated" in format_transcript(transcript, fmt)
    with pytest.raises(AudioDecodeError):  # its inputs still go through the real decoder
        decode_audio(_wav(6.0)[:5000])


def test_soak_inputs_are_what_they_claim() -> None:
    from jobs.soak import SoakConfig, build_entries

    entries, uploads = build_entries(SoakConfig(jobs=10, corrupt=8, malformed=12), "in-b", "s3://out-b/t/")
    assert [e.kind for e in entries].count("good") == 10 and len(entries) == 30
    for key, data in uploads.items():
        if "/corrupt-" in key:
            with pytest.raises(AudioDecodeError):
                decode_audio(data)
        else:
            assert decode_audio(data).size > 0
    from rayscribe.queue.jobspec import JobSpecError, parse_job

    for entry in entries:
        if entry.kind == "malformed":
            with pytest.raises(JobSpecError):
                parse_job(entry.body)
        else:
            assert parse_job(entry.body).job_id == entry.job_id
    assert len({e.body for e in entries}) == len(entries)


def _kill_the_worker_once_busy(loop: Any, pool: Any, inflight: int,
                               kill: Callable[[Any], Any] | None = None) -> tuple[Any, Any]:
    """Run ``loop`` (draining) on a thread, kill the pool's one worker (``ray.kill``, or ``kill(slot)``) once
    ``inflight`` jobs are on it, and return the killed handle and the loop's report once the loop has drained."""
    import ray

    reports: list[Any] = []
    runner = threading.Thread(target=lambda: reports.append(loop.run()), daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while pool.slots[0].inflight < inflight:
        assert time.monotonic() < deadline, f"{inflight} job(s) never were in flight together"
        time.sleep(0.05)  # polling interval
    first = pool.slots[0].handle
    if kill is None:
        ray.kill(first, no_restart=True)
    else:
        kill(pool.slots[0])
    runner.join(timeout=120)
    assert not runner.is_alive(), "the loop did not drain"
    return first, reports[0]


def test_a_killed_worker_is_replaced_once_and_both_its_jobs_run_again(ray_connected, moto_server,
                                                                       queue_names) -> None:
    """Two jobs in flight on one worker that is killed: both come back with the worker error, but only the first
    may replace the worker (the second used to replace the healthy replacement too, leaking it)."""
    import boto3
    import ray

    from actors.ingest import IngestLoop
    from actors.pool import WhisperPool
    from rayscribe.config.queue import load_queue_settings
    from rayscribe.queue import infra
    from rayscribe.queue.sqs import JobQueue

    settings = load_settings(backend="simulated", simulated_speed=1.0, workers=1, cpus_per_worker=0.1,
                             gpu_per_worker=0, max_inflight_per_worker=2, output_formats=["txt"])
    qs = load_queue_settings(visibility_timeout=30, heartbeat_seconds=5, wait_seconds=1, retry_delay_seconds=0)
    infra.up(qs)
    bucket = queue_names["RAYSCRIBE_INPUT_BUCKET"]
    boto3.client("s3").put_object(Bucket=bucket, Key="a.wav", Body=_wav(3.0))
    out = f"s3://{queue_names['RAYSCRIBE_OUTPUT_BUCKET']}/t/"
    JobQueue(qs).send("normal", [json.dumps({"job_id": f"j{i}", "s3_input_path": f"s3://{bucket}/a.wav",
                                             "s3_output_path": out}) for i in range(2)])
    pool = WhisperPool(settings, workers=1)
    pool.start()
    loop = IngestLoop(settings, qs, pool, drain=True)
    try:
        first, report = _kill_the_worker_once_busy(loop, pool, inflight=2)
        assert pool.replaced == 1
        assert pool.slots[0].handle is not first
        # Both ran again at once on the replacement, without a round trip through SQS (still the first receive).
        assert report.count("done") == 2 and report.count("requeued") == 2 and report.count("retry") == 0
        assert ray.get(pool.slots[0].handle.info.remote(), timeout=60)["backend"] == "simulated"
        s3 = boto3.client("s3")
        for i in range(2):
            s3.head_object(Bucket=queue_names["RAYSCRIBE_OUTPUT_BUCKET"], Key=f"t/j{i}.done.json")
            metrics = s3.get_object(Bucket=queue_names["RAYSCRIBE_OUTPUT_BUCKET"], Key=f"t/j{i}.metrics.json")
            assert json.loads(metrics["Body"].read())["attempt"] == 1
    finally:
        loop.request_stop(release=True)
        pool.stop()


def test_a_standby_worker_takes_a_killed_workers_place(ray_connected, moto_server, queue_names) -> None:
    """With a warm standby (``spare_workers=1``), a killed worker's slot gets the standby itself, its job runs
    again there, and a new standby starts in its place."""
    import boto3
    import ray

    from actors.ingest import IngestLoop
    from actors.pool import WhisperPool
    from rayscribe.config.queue import load_queue_settings
    from rayscribe.queue import infra
    from rayscribe.queue.sqs import JobQueue

    settings = load_settings(backend="simulated", simulated_speed=1.0, workers=1, spare_workers=1,
                             cpus_per_worker=0.1, gpu_per_worker=0, max_inflight_per_worker=1, output_formats=["txt"])
    qs = load_queue_settings(visibility_timeout=30, heartbeat_seconds=5, wait_seconds=1, retry_delay_seconds=0)
    infra.up(qs)
    bucket = queue_names["RAYSCRIBE_INPUT_BUCKET"]
    boto3.client("s3").put_object(Bucket=bucket, Key="a.wav", Body=_wav(4.0))
    out = f"s3://{queue_names['RAYSCRIBE_OUTPUT_BUCKET']}/t/"
    pool = WhisperPool(settings, workers=1)
    pool.start()
    try:
        assert len(pool.spares) == 1
        standby, standby_info = pool.spares[0]
        assert ray.get(standby_info, timeout=60)["backend"] == "simulated"  # started and ready
        JobQueue(qs).send("normal", [json.dumps({"job_id": "s0", "s3_input_path": f"s3://{bucket}/a.wav",
                                                 "s3_output_path": out})])
        _, report = _kill_the_worker_once_busy(IngestLoop(settings, qs, pool, drain=True), pool, inflight=1)
        assert pool.replaced == 1 and pool.slots[0].handle is standby and pool.slots[0].ready
        assert report.count("done") == 1 and report.count("requeued") == 1 and report.count("retry") == 0
        assert len(pool.spares) == 1 and pool.spares[0][0] is not standby  # a new standby in its place
        assert ray.get(pool.spares[0][1], timeout=60)["backend"] == "simulated"
        boto3.client("s3").head_object(Bucket=queue_names["RAYSCRIBE_OUTPUT_BUCKET"], Key="t/s0.done.json")
    finally:
        pool.stop()
    assert pool.spares == []


def _one_job_on_one_worker(queue_names: dict[str, str], seconds: float, **settings: Any) -> tuple[Any, Any, Any]:
    """Settings, queue settings and a started one-worker pool (simulated, real time) with one queued job
    ``p0`` of ``seconds`` of audio."""
    import boto3

    from actors.pool import WhisperPool
    from rayscribe.config.queue import load_queue_settings
    from rayscribe.queue import infra
    from rayscribe.queue.sqs import JobQueue

    config = load_settings(backend="simulated", simulated_speed=1.0, workers=1, cpus_per_worker=0.1,
                           gpu_per_worker=0, max_inflight_per_worker=1, output_formats=["txt"], **settings)
    qs = load_queue_settings(visibility_timeout=30, heartbeat_seconds=5, wait_seconds=1, retry_delay_seconds=0)
    infra.up(qs)
    bucket = queue_names["RAYSCRIBE_INPUT_BUCKET"]
    boto3.client("s3").put_object(Bucket=bucket, Key="p.wav", Body=_wav(seconds))
    JobQueue(qs).send("normal", [json.dumps({"job_id": "p0", "s3_input_path": f"s3://{bucket}/p.wav",
                                             "s3_output_path": f"s3://{queue_names['RAYSCRIBE_OUTPUT_BUCKET']}/t/"})])
    pool = WhisperPool(config, workers=1)
    pool.start()
    return config, qs, pool


def test_a_frozen_worker_is_found_by_its_probe_and_its_job_runs_on_a_standby(ray_connected, moto_server,
                                                                           queue_names) -> None:
    """A worker process frozen mid-job (SIGSTOP: alive to Ray, which never reports it) stops answering its
    liveness probe; after ``worker_probe_seconds`` the loop stops it, a standby takes its slot and the job runs
    again there on the same lease (without the probe the loop would renew that lease forever)."""
    import signal

    import boto3
    import ray

    from actors.ingest import IngestLoop

    settings, qs, pool = _one_job_on_one_worker(queue_names, 6.0, spare_workers=1, worker_probe_seconds=1.5)
    frozen: list[int] = []

    def freeze(slot: Any) -> None:
        frozen.append(int(slot.info["pid"]))
        os.kill(frozen[0], signal.SIGSTOP)

    try:
        standby, standby_info = pool.spares[0]
        assert ray.get(standby_info, timeout=60)["backend"] == "simulated"  # started and ready
        first, report = _kill_the_worker_once_busy(IngestLoop(settings, qs, pool, drain=True), pool, 1, freeze)
        assert pool.replaced == 1 and pool.slots[0].handle is standby and first is not standby
        requeued = [o for o in report.outcomes if o.status == "requeued"]
        assert len(requeued) == 1 and "did not answer for" in (requeued[0].reason or "")
        assert report.count("done") == 1 and report.count("retry") == 0
        metrics = boto3.client("s3").get_object(Bucket=queue_names["RAYSCRIBE_OUTPUT_BUCKET"], Key="t/p0.metrics.json")
        assert json.loads(metrics["Body"].read())["attempt"] == 1
    finally:
        for pid in frozen:  # stopped by the loop already; never leave a frozen process behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pool.stop()


def test_a_busy_worker_answers_its_probes_and_keeps_its_job(ray_connected, moto_server, queue_names) -> None:
    """A job four times longer than ``worker_probe_seconds``: the worker answers probes while it runs (on their
    own thread), so it is not taken for lost."""
    from actors.ingest import IngestLoop

    settings, qs, pool = _one_job_on_one_worker(queue_names, 4.0, worker_probe_seconds=1.0)
    try:
        report = IngestLoop(settings, qs, pool, drain=True).run()
        assert report.count("done") == 1 and report.count("requeued") == 0 and pool.replaced == 0
    finally:
        pool.stop()


def test_short_soak_loses_and_duplicates_nothing_and_explains_every_failure(tmp_path: Path) -> None:
    """The soak entrypoint end to end on its own Ray cluster (head + 2 worker nodes) and moto: 60 jobs, 8
    simulated workers, 2 actor kills, a worker node killed, a 4 s SQS/S3 outage (20 s leases, so the jobs it
    catches come back soon), 5 malformed messages and 5 corrupt audio files."""
    results_file = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.soak", "--jobs", "60", "--workers", "8", "--spares", "2", "--nodes", "2",
         "--speed", "4",
         "--actor-kills", "2", "--outage-seconds", "4", "--visibility", "20", "--malformed", "5", "--corrupt", "5",
         "--json", str(results_file)],
        cwd=REPO, capture_output=True, text=True, timeout=540, env={**os.environ},
    )
    assert results_file.exists(), proc.stderr[-4000:]
    results = json.loads(results_file.read_text())
    outcome, faults = results["outcome"], results["faults"]
    assert outcome["lost"] == 0, outcome["lost_jobs"]
    assert outcome["duplicated"] == 0, outcome["duplicated_jobs"]
    assert outcome["failures"] == 10 and outcome["explained_percent"] == 100.0, outcome["unexplained"]
    assert outcome["good_done"] == 60 and outcome["left_in_flight"] == 0 and not outcome["stray_objects"]
    assert faults["actor_kills"] == 2 and faults["node_kills"] == 1 and faults["outage_seconds"] >= 4
    assert proc.returncode == 0 and results["passed"], proc.stdout[-3000:]
    assert "lost" in proc.stdout and "drain rate" in proc.stdout


def test_busy_share_follows_each_workers_queue() -> None:
    """A job sent while its worker is busy begins when the one before ends; busy time is split across buckets."""
    from jobs.soak import busy_per_bucket

    work = [("w1", 100.0, 4.0), ("w1", 101.0, 4.0),  # w1: 100-104, then 104-108 (queued behind the first)
            ("w2", 112.0, 6.0)]  # w2: idle until 112, then 112-118
    # 2 workers x 10 s in bucket 0, which holds 8 s of w1; the window ends 8 s into bucket 1 (2 x 8 s), which
    # holds 6 s of w2
    assert busy_per_bucket(work, 100.0, 118.0, 10.0, 2) == [40.0, 37.5]
