"""The queue path end to end, as an operator runs it: moto server for SQS and S3, `rayscribe submit`, then
`rayscribe worker` (a real process) on the session's Ray cluster with the real model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest

from jobs.harness.audio import build_long_form, write_wav
from rayscribe.audio import decode_audio, probe_duration
from tests.fixtures_moto import unique_queue_env
from tests.speech import REPO, normalize, references, require_speech, wer

RAYSCRIBE = str(Path(sys.executable).parent / "rayscribe")
LJ_CLIPS = 4
WORKER_ENV = {
    "RAYSCRIBE_CPU_THREADS": "1",
    "RAYSCRIBE_VISIBILITY_TIMEOUT": "60",
    "RAYSCRIBE_HEARTBEAT_SECONDS": "3",
    "RAYSCRIBE_WEBHOOK_RETRIES": "1",
    "RAYSCRIBE_WEBHOOK_BACKOFF_SECONDS": "0.1",
    "RAYSCRIBE_WEBHOOK_TIMEOUT": "5",
    "RAYSCRIBE_OUTPUT_FORMATS": "txt,srt,vtt,json",
}


def run_cli(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([RAYSCRIBE, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **WORKER_ENV, **env})


def wait_for(predicate: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)  # polling interval
    tail = log.read_text()[-3000:] if log is not None else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


class Hooks(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Hooks.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def queue_url(name: str) -> str:
    return str(boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def counts(name: str) -> dict[str, int]:
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=queue_url(name), AttributeNames=["All"])["Attributes"]
    return {"visible": int(attrs["ApproximateNumberOfMessages"]),
            "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"])}


def s3_json(url: str) -> dict[str, Any]:
    bucket, key = url[5:].split("/", 1)
    return dict(json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()))


def s3_text(url: str) -> str:
    bucket, key = url[5:].split("/", 1)
    return str(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def s3_keys(bucket: str, prefix: str = "") -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def send(queue: str, body: str) -> None:
    boto3.client("sqs").send_message(QueueUrl=queue_url(queue), MessageBody=body)


def dead_letters(name: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    found: dict[str, dict[str, Any]] = {}
    for _ in range(5):
        for m in sqs.receive_message(QueueUrl=queue_url(name), MaxNumberOfMessages=10, VisibilityTimeout=0,
                                     MessageAttributeNames=["All"]).get("Messages", []):
            found[m["MessageId"]] = {"body": m["Body"], **{k: v["StringValue"] for k, v in
                                                           m.get("MessageAttributes", {}).items()}}
    return list(found.values())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """jfk (wav, mp3, flac), the 5 librivox clips and the first LJ Speech clips, by reference name."""
    root = require_speech()
    folder = tmp_path_factory.mktemp("queue-clips")
    chosen: dict[str, Path] = {}
    for sub, limit in (("jfk", None), ("librivox", None), ("ljspeech", LJ_CLIPS)):
        (folder / sub).mkdir()
        for name in list(references(str(root / sub)))[:limit]:
            shutil.copy(root / sub / name, folder / sub / name)
            chosen[f"{sub}/{name}"] = folder / sub / name
    return chosen


@pytest.fixture(scope="module")
def direct(fw_engine, clips: dict[str, Path]) -> dict[str, str]:
    """Each clip transcribed by faster-whisper directly: the peer the batch path is also measured against."""
    from rayscribe.audio import decode_audio

    texts = {}
    for ref, path in clips.items():
        segments, _ = fw_engine.pipeline.transcribe(decode_audio(path), batch_size=8, word_timestamps=True)
        texts[ref] = " ".join(s.text.strip() for s in segments)
    return texts


@pytest.fixture(scope="module")
def e2e(ray_cluster, moto_server, clips: dict[str, Path], webhook_server: str,
        tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """infra up; submit the clips (CLI, with upload) and hand-written messages, poison ones among them; worker
    --drain."""
    env = {**unique_queue_env("e2e"), "RAYSCRIBE_SPLIT_SECONDS": "100", "RAYSCRIBE_SPLIT_PIECE_SECONDS": "60"}
    assert run_cli("infra", "up", env=env).returncode == 0
    in_bucket, out_bucket = env["RAYSCRIBE_INPUT_BUCKET"], env["RAYSCRIBE_OUTPUT_BUCKET"]
    out = f"s3://{out_bucket}/transcripts/"
    folder = next(iter(clips.values())).parents[1]
    submitted = run_cli("submit", str(folder / "librivox"), str(folder / "ljspeech"), "--out", out, env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_of = {}
    for line in submitted.stdout.splitlines():
        job_id, source = line.split("\t")
        job_of[source.rsplit("/", 1)[-1]] = job_id
    jobs = {ref: job_of[Path(ref).name] for ref in clips if not ref.startswith("jfk/")}
    s3 = boto3.client("s3")
    for name in ("jfk.wav", "jfk.mp3", "jfk.flac"):
        s3.upload_file(str(clips[f"jfk/{name}"]), in_bucket, f"raw/{name}")
    bad_wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64
    s3.put_object(Bucket=in_bucket, Key="raw/corrupt.wav", Body=bad_wav)
    # the predecessor's exact message shape, numeric priority included
    predecessor = {"job_id": "jfk-flac", "s3_input_path": f"s3://{in_bucket}/raw/jfk.flac",
                   "s3_output_path": out, "priority": 1}
    hooked = {"job_id": "jfk-wav", "s3_input_path": f"s3://{in_bucket}/raw/jfk.wav", "s3_output_path": out,
              "webhook_url": webhook_server, "formats": ["txt", "json"]}
    broken_hook = {"job_id": "jfk-mp3", "s3_input_path": f"s3://{in_bucket}/raw/jfk.mp3", "s3_output_path": out,
                   "webhook_url": "http://127.0.0.1:9/nothing-listens-here", "priority": "high"}
    jobs.update({"jfk/jfk.flac": "jfk-flac", "jfk/jfk.wav": "jfk-wav", "jfk/jfk.mp3": "jfk-mp3"})
    # one long file (150 s > RAYSCRIBE_SPLIT_SECONDS): split across both workers and stitched
    long_path = tmp_path_factory.mktemp("long") / "long.wav"
    long_audio, long_text = build_long_form(
        [(decode_audio(clips[r]), references(str(require_speech() / "librivox"))[Path(r).name])
         for r in clips if r.startswith("librivox/")], 150.0)
    write_wav(long_path, long_audio)
    s3.upload_file(str(long_path), in_bucket, "raw/long.wav")
    send(env["RAYSCRIBE_QUEUE_NAME"], json.dumps({"job_id": "long-split", "s3_input_path":
                                                  f"s3://{in_bucket}/raw/long.wav", "s3_output_path": out}))
    send(env["RAYSCRIBE_QUEUE_NAME"], json.dumps(predecessor))
    send(env["RAYSCRIBE_QUEUE_NAME"], json.dumps(hooked))
    send(env["RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME"], json.dumps(broken_hook))
    poison = {
        "malformed": "{this is not json",
        "missing": json.dumps({"job_id": "p-missing", "s3_input_path": f"s3://{in_bucket}/raw/nope.wav",
                               "s3_output_path": out}),
        "corrupt": json.dumps({"job_id": "p-corrupt", "s3_input_path": f"s3://{in_bucket}/raw/corrupt.wav",
                               "s3_output_path": out}),
        "local": json.dumps({"job_id": "p-local", "s3_input_path": "/etc/hostname", "s3_output_path": "/tmp/x/"}),
        "version": json.dumps({"version": 7, "job_id": "p-version", "s3_input_path": f"s3://{in_bucket}/raw/x",
                               "s3_output_path": out}),
    }
    for body in poison.values():
        send(env["RAYSCRIBE_QUEUE_NAME"], body)
    started = time.monotonic()
    proc = run_cli("worker", "--drain", "--address", ray_cluster.address, "--workers", "2", env=env)
    return {"env": env, "out": out, "jobs": jobs, "proc": proc, "seconds": time.monotonic() - started,
            "poison": poison, "long_text": long_text}


def test_a_long_file_is_split_across_the_workers(e2e) -> None:
    metrics = s3_json(f"{e2e['out']}long-split.metrics.json")
    assert metrics["pieces"] >= 2 and metrics["workers_used"] == 2, metrics
    assert wer([e2e["long_text"]], [s3_text(f"{e2e['out']}long-split.txt")]) < 0.1


def test_every_transcript_lands_in_s3_as_accurate_as_the_batch_path(e2e, clips, direct) -> None:
    proc = e2e["proc"]
    assert proc.returncode == 1, proc.stderr[-4000:]  # 1: some jobs (the poison ones) failed
    assert "Traceback" not in proc.stderr
    root = require_speech()
    for folder in ("jfk", "librivox", "ljspeech"):
        refs = {ref: text for ref, text in
                ((f"{folder}/{n}", t) for n, t in references(str(root / folder)).items()) if ref in clips}
        ours = [json.loads(s3_text(f"{e2e['out']}{e2e['jobs'][ref]}.json"))["text"] for ref in refs]
        baseline = [direct[ref] for ref in refs]
        one_word = 1 / sum(len(normalize(r).split()) for r in refs.values())
        ours_wer, direct_wer = wer(list(refs.values()), ours), wer(list(refs.values()), baseline)
        assert ours_wer <= direct_wer + one_word, f"{folder}: queue WER {ours_wer:.4f} vs direct {direct_wer:.4f}"
        assert ours_wer < 0.15
    srt = s3_text(f"{e2e['out']}{e2e['jobs']['librivox/sense_and_sensibility_01_austen_64kb-0870.wav']}.srt")
    assert "-->" in srt
    assert "ask not" in s3_text(f"{e2e['out']}jfk-wav.txt").lower()
    assert not any(k.endswith(".srt") for k in s3_keys(e2e["env"]["RAYSCRIBE_OUTPUT_BUCKET"], "transcripts/jfk-wav"))
    assert "rayscribe worker" in proc.stderr and "job started: jfk-flac" in proc.stderr
    assert "job done: jfk-flac" in proc.stderr


def test_short_jobs_are_packed_into_shared_worker_calls(e2e) -> None:
    """faster-whisper shares model windows across files, so short jobs read ahead go to a worker together (each
    keeping its own outputs: the WER test above checks every one of them against its own reference)."""
    import re

    stderr = e2e["proc"].stderr
    packed = {int(n) for n in re.findall(r"job started: \S+ .*packed with (\d+) other", stderr)}
    assert packed and max(packed) >= 2, stderr[-3000:]
    assert "job started: long-split" in stderr and not re.search(r"job started: long-split .*packed", stderr)


def test_metrics_json_is_present_and_consistent(e2e, clips) -> None:
    for ref, job_id in e2e["jobs"].items():
        metrics = s3_json(f"{e2e['out']}{job_id}.metrics.json")
        assert metrics["job_id"] == job_id
        assert metrics["audio_seconds"] == pytest.approx(probe_duration(clips[ref]), abs=0.2)
        assert metrics["processing_seconds"] > 0
        assert metrics["real_time_factor"] == pytest.approx(metrics["audio_seconds"] / metrics["processing_seconds"],
                                                            rel=0.02)
        assert metrics["model"] == "tiny.en" and metrics["device"] == "cpu" and metrics["worker"]["pid"] > 0
        assert metrics["received_at"] <= metrics["started_at"] <= metrics["finished_at"]
        done = s3_json(f"{e2e['out']}{job_id}.done.json")
        assert done["status"] == "done" and done["metrics"].endswith(f"{job_id}.metrics.json")


def test_messages_are_deleted_and_poison_is_dead_lettered_with_reasons(e2e) -> None:
    env = e2e["env"]
    for name in ("RAYSCRIBE_QUEUE_NAME", "RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME"):
        assert counts(env[name]) == {"visible": 0, "in_flight": 0}
    letters = dead_letters(env["RAYSCRIBE_DLQ_NAME"])
    by_body = {m["body"]: m for m in letters}
    assert set(by_body) == set(e2e["poison"].values())
    assert len({m["source_message_id"] for m in letters}) == len(letters)  # each names the message it copies
    poison = e2e["poison"]
    assert "not JSON" in by_body[poison["malformed"]]["error_reason"]
    assert by_body[poison["missing"]]["error_type"] == "MissingInput"
    assert "no such object" in by_body[poison["missing"]]["error_reason"]
    assert by_body[poison["corrupt"]]["error_type"] == "AudioDecodeError"
    assert "cannot decode audio" in by_body[poison["corrupt"]]["error_reason"]
    assert "unsupported version 7" in by_body[poison["version"]]["error_reason"]
    local = by_body[poison["local"]]
    assert local["error_type"] == "LocalPathRefused" and "RAYSCRIBE_ALLOW_LOCAL_PATHS" in local["error_reason"]
    assert not Path("/tmp/x/p-local.error.json").exists()
    for job_id in ("p-missing", "p-corrupt", "p-version"):
        record = s3_json(f"{e2e['out']}{job_id}.error.json")
        assert record["job_id"] == job_id and record["status"] == "failed" and record["attempt"] == 1
        assert record["reason"] == by_body[poison[job_id.removeprefix("p-")]]["error_reason"]
    assert "p-corrupt" in e2e["proc"].stderr and "dead-letter queue" in e2e["proc"].stderr


def test_status_and_dlq_commands(e2e) -> None:
    env = e2e["env"]
    status = run_cli("status", "jfk-flac", "p-corrupt", "never-submitted", "--out", e2e["out"], env=env)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("jfk-flac: done") and "tiny.en on cpu" in lines[0]
    assert lines[1].startswith("p-corrupt: failed") and "cannot decode audio" in lines[1]
    assert lines[2].startswith("never-submitted: pending")
    listed = run_cli("dlq", "list", env=env)
    assert listed.returncode == 0 and "p-missing: cannot read" in listed.stdout
    assert "5 message(s)" in listed.stderr


def test_webhook_is_posted_and_a_failing_one_does_not_fail_the_job(e2e) -> None:
    posted = [p for p in Hooks.received if p.get("job_id") == "jfk-wav"]
    assert len(posted) == 1 and posted[0]["status"] == "done"
    assert posted[0]["metrics"]["audio_seconds"] > 10 and posted[0]["outputs"][0].endswith("jfk-wav.txt")
    assert s3_json(f"{e2e['out']}jfk-mp3.done.json")["status"] == "done"
    assert "webhook http://127.0.0.1:9/nothing-listens-here failed" in e2e["proc"].stderr


def test_a_redelivered_finished_job_is_not_transcribed_twice(e2e, ray_cluster) -> None:
    env, out = e2e["env"], e2e["out"]
    metrics_before = s3_text(f"{out}jfk-flac.metrics.json")
    send(env["RAYSCRIBE_QUEUE_NAME"], json.dumps({"job_id": "jfk-flac", "s3_input_path": "s3://x/ignored.flac",
                                                  "s3_output_path": out}))
    proc = run_cli("worker", "--drain", "--address", ray_cluster.address, "--workers", "1", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "job already done: jfk-flac" in proc.stderr and "job started" not in proc.stderr
    assert s3_text(f"{out}jfk-flac.metrics.json") == metrics_before
    assert counts(env["RAYSCRIBE_QUEUE_NAME"]) == {"visible": 0, "in_flight": 0}


def test_dlq_redrive_sends_a_fixed_job_back(e2e) -> None:
    env = e2e["env"]
    in_bucket = env["RAYSCRIBE_INPUT_BUCKET"]
    boto3.client("s3").copy_object(Bucket=in_bucket, Key="raw/nope.wav",
                                   CopySource={"Bucket": in_bucket, "Key": "raw/jfk.wav"})
    redriven = run_cli("dlq", "redrive", "p-missing", env=env)
    assert redriven.returncode == 0, redriven.stderr
    assert "redriven: p-missing" in redriven.stdout
    assert counts(env["RAYSCRIBE_QUEUE_NAME"])["visible"] == 1
    assert len(dead_letters(env["RAYSCRIBE_DLQ_NAME"])) == len(e2e["poison"]) - 1
    status = run_cli("status", "p-missing", "--out", e2e["out"], env=env)
    assert "p-missing: pending" in status.stdout  # the stale error record went with the redrive


@pytest.mark.parametrize("signals", [1, 2])
def test_stop_finishes_or_releases_leases(ray_cluster, moto_server, clips, tmp_path, signals: int) -> None:
    """One SIGTERM: jobs in flight finish, nothing else is received. Two: every lease is released at once."""
    env = unique_queue_env("stop")
    assert run_cli("infra", "up", env=env).returncode == 0
    folder = clips["librivox/sense_and_sensibility_01_austen_64kb-0870.wav"].parent
    total = 0
    for _ in range(2):  # 10 jobs: the 5 clips twice
        submitted = run_cli("submit", str(folder), env=env)
        assert submitted.returncode == 0, submitted.stderr
        total += len(submitted.stdout.splitlines())
    log = tmp_path / "worker.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([RAYSCRIBE, "worker", "--address", ray_cluster.address, "--workers", "2"],
                                stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, text=True,
                                env={**os.environ, **WORKER_ENV, **env})
    try:
        wait_for(lambda: "job started" in log.read_text(), 240, "the first job to start", log)
        proc.send_signal(signal.SIGTERM)
        if signals == 2:  # the second once the first has been seen (two at once arrive as one)
            wait_for(lambda: "stopping: no new receives" in log.read_text(), 60, "the first stop", log)
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    done = text.count("job done:")
    left = counts(env["RAYSCRIBE_QUEUE_NAME"])
    assert left["in_flight"] == 0, text[-3000:]  # no lease is left to time out
    assert left["visible"] == total - done
    if signals == 1:
        assert done >= 1 and "jobs in flight finish first" in text
    else:
        assert "releasing every lease now" in text and "released" in text
        assert done < total
