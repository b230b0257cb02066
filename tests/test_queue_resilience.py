"""The queue path under transient AWS failures, and the in-cluster ingest actor.

A fault-injecting proxy (jobs/harness/faults.py) sits between rayscribe and moto: 500s, 503s and dropped
connections. botocore's retry mode, configured from settings in rayscribe/aws.py, must absorb them: a single
attempt fails, the default attempts succeed, and a whole job run through the failures completes exactly once.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs.harness.faults import FaultProxy
from rayscribe.config.queue import QueueSettings, load_queue_settings
from rayscribe.queue.sqs import JobQueue, QueueError
from rayscribe.storage import Storage, StorageError
from tests.fixtures_moto import AWS_ENV, MotoServer, unique_queue_env
from tests.speech import SAMPLES

CLIPS = {"lj": SAMPLES / "LJ001-0001.wav", "jfk": SAMPLES / "jfk.mp3"}
HF_SECRET = "hf_SECRETworkerK3n9Wq"


def _settings(names: dict[str, str], **overrides: Any) -> QueueSettings:
    values: dict[str, Any] = {k.removeprefix("RAYSCRIBE_").lower(): v for k, v in names.items()}
    values.update(wait_seconds=1, visibility_timeout=60, heartbeat_seconds=5, retry_delay_seconds=0)
    return load_queue_settings(**{**values, **overrides})


@pytest.fixture
def through_proxy(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault proxy in front of moto, and this process's AWS clients pointed at it."""
    with FaultProxy(moto_server.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield proxy


def test_botocore_retries_absorb_transient_failures(moto_server: MotoServer, through_proxy: FaultProxy) -> None:
    from rayscribe.queue import infra

    names = unique_queue_env("retry")
    infra.up(_settings(names))
    bucket = names["RAYSCRIBE_INPUT_BUCKET"]
    url = f"s3://{bucket}/retry/a.txt"

    # One attempt: each kind of fault reaches the caller as a clear error.
    single = _settings(names, aws_max_attempts=1)
    for fault in (503, 500, "drop"):
        through_proxy.fail_next(fault)
        with pytest.raises(StorageError, match="cannot write"):
            Storage(single).write_bytes(url, b"x")
    through_proxy.fail_next(503)
    with pytest.raises(QueueError, match="cannot"):
        JobQueue(single).send("normal", ["{}"])

    # The default attempts (standard mode, 5): the same faults, two in a row, and every call succeeds.
    retrying = _settings(names)
    assert retrying.aws_max_attempts == 5 and retrying.aws_retry_mode == "standard"
    storage, queue = Storage(retrying), JobQueue(retrying)
    before = sum(through_proxy.injected.values())
    through_proxy.fail_next(503, "drop")
    assert storage.write_bytes(url, b"payload")
    through_proxy.fail_next(500, 503)
    assert storage.read_bytes(url) == b"payload"
    through_proxy.fail_next("drop", 500)
    queue.send("normal", ['{"n": 1}'])
    through_proxy.fail_next(503, 503)
    received = queue.receive("normal", 10, 1)
    assert [m.body for m in received] == ['{"n": 1}']
    assert sum(through_proxy.injected.values()) - before == 8
    # The conditional put is retried too, and still refuses a second writer.
    through_proxy.fail_next(503)
    assert storage.write_bytes(f"{url}.done", b"1", if_absent=True)
    through_proxy.fail_next("drop")
    assert not storage.write_bytes(f"{url}.done", b"2", if_absent=True)
    assert storage.read_bytes(f"{url}.done") == b"1"


def _done(bucket: str, key: str) -> bool:
    s3 = boto3.client("s3")  # straight to moto, not through the proxy
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError:
        return False


def test_ingest_actor_runs_jobs_through_failures_exactly_once(ray_connected: Any, moto_server: MotoServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """IngestActor on the session cluster, its AWS traffic through the proxy failing every 4th request: both jobs
    done once, the path-traversal job dead-lettered, then stop(release=True) and its report."""
    import ray

    from jobs.worker import IngestActor
    from rayscribe.config.settings import load_settings
    from rayscribe.queue import infra

    names = unique_queue_env("actor")
    qs = _settings(names)
    infra.up(qs)
    in_bucket, out_bucket = names["RAYSCRIBE_INPUT_BUCKET"], names["RAYSCRIBE_OUTPUT_BUCKET"]
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    out = f"s3://{out_bucket}/transcripts/"
    queue_url = sqs.get_queue_url(QueueName=names["RAYSCRIBE_QUEUE_NAME"])["QueueUrl"]
    for job_id, path in CLIPS.items():
        s3.upload_file(str(path), in_bucket, f"raw/{path.name}")
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(
            {"job_id": job_id, "s3_input_path": f"s3://{in_bucket}/raw/{path.name}", "s3_output_path": out}))
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(
        {"job_id": "escape", "s3_input_path": f"s3://{in_bucket}/raw/jfk.mp3",
         "s3_output_path": f"s3://{out_bucket}/transcripts/../elsewhere/"}))

    # DEBUG logging and an HF token: the worker's log lines (in the session's Ray logs) must not show it.
    settings = load_settings(cpu_threads=1, cpus_per_worker=0.5, output_formats=["txt", "json"], log_level="DEBUG",
                             hf_token=HF_SECRET)
    with FaultProxy(moto_server.url, every=4, max_faults=30) as proxy:
        env = {**AWS_ENV, "AWS_ENDPOINT_URL": proxy.url}
        actor = IngestActor.options(runtime_env={"env_vars": env}).remote(  # type: ignore[attr-defined]
            settings.model_dump(), qs.model_dump(), workers=1)
        run = actor.run.remote()
        deadline = time.monotonic() + 300
        while not all(_done(out_bucket, f"transcripts/{j}.done.json") for j in CLIPS):
            ready, _ = ray.wait([run], timeout=0.5)  # polling; a run that ends early is a failure to show
            if ready:
                pytest.fail(f"the actor's run ended before the jobs were done: {ray.get(run)}")
            assert time.monotonic() < deadline, f"jobs not done in 300 s; proxy saw {proxy.requests} requests"
        ray.get(actor.stop.remote(release=True), timeout=30)
        report = ray.get(run, timeout=120)
        ray.kill(actor)

    assert report["done"] == 2 and report["duplicates"] == 0, report
    assert report["retried"] == 0, report  # botocore absorbed every fault; no job went back to the queue
    assert report["failed"] == 1 and report["stop_reason"] == "stopped now; leases released", report
    failed = next(j for j in report["jobs"] if j["status"] == "failed")
    assert failed["job_id"] == "escape" and "'..' segment" in failed["reason"]
    assert sum(proxy.injected.values()) >= 5, proxy.injected  # the run really went through failures
    assert proxy.forwarded["ReceiveMessage"] > 0 and proxy.forwarded["PUT s3"] >= 6
    for job_id in CLIPS:
        metrics = json.loads(s3.get_object(Bucket=out_bucket, Key=f"transcripts/{job_id}.metrics.json")["Body"].read())
        assert metrics["attempt"] == 1 and metrics["audio_seconds"] > 1
    text = s3.get_object(Bucket=out_bucket, Key="transcripts/jfk.txt")["Body"].read().decode().lower()
    assert "ask not" in text
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=out_bucket).get("Contents", [])]
    assert not [k for k in keys if "elsewhere" in k or ".." in k], keys
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    log_dir = Path(ray_connected.temp_dir) / "session_latest" / "logs"
    deadline = time.monotonic() + 30  # Ray writes worker output to its log files on its own schedule
    while True:
        logs = [p for p in log_dir.rglob("*") if p.is_file()]
        if any(b"job done: jfk" in p.read_bytes() for p in logs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any(b"job done: jfk" in p.read_bytes() for p in logs)  # the worker's log lines are there...
    leaks = [str(p) for p in logs if HF_SECRET.encode() in p.read_bytes()]
    assert not leaks, f"the HF token appears in {leaks}"  # ...and the token is not


@contextlib.contextmanager
def _draining_loop(settings: Any, qs: QueueSettings) -> Iterator[tuple[Any, list[Any]]]:
    """A one-worker pool and an ingest loop draining the queues on a thread: (loop, [its report once it ends]).
    The loop must have drained by the end of the block; it is stopped (leases released) either way."""
    import threading

    from actors.ingest import IngestLoop
    from actors.pool import WhisperPool

    pool = WhisperPool(settings, workers=1)
    pool.start()
    loop = IngestLoop(settings, qs, pool, drain=True)
    reports: list[Any] = []
    runner = threading.Thread(target=lambda: reports.append(loop.run()), daemon=True)
    runner.start()
    try:
        yield loop, reports
        runner.join(timeout=120)
        assert not runner.is_alive(), "the loop did not drain"
    finally:
        loop.request_stop(release=True)
        runner.join(timeout=30)
        pool.stop()


def _wait_until(condition: Any, what: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.02)  # polling interval


def _jfk_jobs(prefix: str, jobs: list[str], **engine: Any) -> tuple[QueueSettings, str, Any, Any]:
    """Queues and buckets made, jfk uploaded, and the simulated engine's settings (``engine`` overrides them):
    (queue settings, output bucket, engine settings, a function that sends the jobs, each on jfk)."""
    from rayscribe.config.settings import load_settings
    from rayscribe.queue import infra

    names = unique_queue_env(prefix)
    qs = _settings(names, aws_max_attempts=2)
    infra.up(qs)
    in_bucket, out_bucket = names["RAYSCRIBE_INPUT_BUCKET"], names["RAYSCRIBE_OUTPUT_BUCKET"]
    boto3.client("s3").upload_file(str(CLIPS["jfk"]), in_bucket, "raw/jfk.mp3")
    settings = load_settings(**{"backend": "simulated", "simulated_speed": 20.0, "workers": 1,
                                "cpus_per_worker": 0.1, "gpu_per_worker": 0, "output_formats": ["txt"], **engine})

    def send() -> None:
        JobQueue(qs).send("normal", [json.dumps({"job_id": j, "s3_input_path": f"s3://{in_bucket}/raw/jfk.mp3",
                                                 "s3_output_path": f"s3://{out_bucket}/t/"}) for j in jobs])

    return qs, out_bucket, settings, send


def test_an_outage_keeps_the_lease_and_the_transcript(ray_connected: Any, moto_server: MotoServer,
                                                      through_proxy: FaultProxy) -> None:
    """S3 reads fail for a while, then S3 writes: the job's input is read again after a backoff and its finished
    transcript is kept and written again, all under its first lease; SQS never sees it come back."""
    qs, out_bucket, settings, send = _jfk_jobs("outage", ["o1"])
    through_proxy.block("GET s3")
    send()
    with _draining_loop(settings, qs) as (_, reports):
        faults = through_proxy.injected
        _wait_until(lambda: faults["503"] >= 4, lambda: faults)  # two reads of the input failed (2 attempts each)
        through_proxy.block("PUT s3")
        _wait_until(lambda: faults["503"] >= 8, lambda: faults)  # ... and then two writes of the outputs
        through_proxy.block()
    report = reports[0]
    assert report.count("done") == 1 and report.count("retry") == 0, report.to_dict()
    requeued = [o for o in report.outcomes if o.status == "requeued"]
    assert requeued and all("cannot read the input" in o.reason for o in requeued)
    s3 = boto3.client("s3")
    metrics = json.loads(s3.get_object(Bucket=out_bucket, Key="t/o1.metrics.json")["Body"].read())
    assert metrics["attempt"] == 1  # the first receive: the message never went back to SQS
    assert b"simulated" in s3.get_object(Bucket=out_bucket, Key="t/o1.txt")["Body"].read()


def test_workers_go_on_with_inputs_read_ahead_while_s3_is_down(ray_connected: Any, moto_server: MotoServer,
                                                               through_proxy: FaultProxy) -> None:
    """With read-ahead, the inputs of the next jobs are in hand before S3 goes down: the worker transcribes them
    during the outage, the transcripts wait in memory, and all are stored once S3 is back, under their first
    lease."""
    from datetime import datetime

    jobs = [f"a{i}" for i in range(4)]
    qs, out_bucket, settings, send = _jfk_jobs("ahead", jobs, simulated_speed=10.0, max_inflight_per_worker=1,
                                               prefetch_per_worker=3)
    send()
    with _draining_loop(settings, qs) as (loop, _):
        reads = through_proxy.forwarded
        _wait_until(lambda: reads["GET s3"] >= len(jobs), lambda: reads)  # every input read: one runs, 3 ahead
        through_proxy.block("GET s3", "PUT s3", "HEAD s3")
        down_at = time.time()
        # all transcribed, some (at least) waiting to be written
        _wait_until(lambda: loop.report.count("done") + len(loop._unstored) >= len(jobs),
                    lambda: loop.report.to_dict())
        stored_during_outage = loop.report.count("done")
        through_proxy.block()
    report = loop.report
    assert report.count("done") == len(jobs) and report.count("retry") == 0, report.to_dict()
    assert stored_during_outage < len(jobs)  # the outage held back at least one finished transcript
    s3 = boto3.client("s3")
    started = []
    for job in jobs:
        metrics = json.loads(s3.get_object(Bucket=out_bucket, Key=f"t/{job}.metrics.json")["Body"].read())
        assert metrics["attempt"] == 1
        started.append(datetime.fromisoformat(metrics["started_at"]).timestamp())
    # Jobs started on the worker while S3 refused every read: their inputs had been read ahead.
    assert sum(1 for t in started if t > down_at) >= 2, (started, down_at)


def test_a_redelivered_done_job_is_deleted_in_a_batch_retried_through_a_failure(
        ray_connected: Any, moto_server: MotoServer, through_proxy: FaultProxy) -> None:
    """A message whose job's done marker is already there is not run again: it is deleted with the finished jobs'
    (DeleteMessageBatch), and a delete that fails is tried again under the same lease, not given back to SQS."""
    qs, out_bucket, settings, send = _jfk_jobs("redone", ["r1"])
    marker = '{"job_id": "r1", "status": "done"}'
    assert Storage(qs).write_text(f"s3://{out_bucket}/t/r1.done.json", marker, if_absent=True)
    through_proxy.block("DeleteMessageBatch")
    send()
    with _draining_loop(settings, qs) as (loop, reports):
        faults = through_proxy.injected
        # two deletes failed (2 attempts each), and the message is kept, with its lease, for the next try
        _wait_until(lambda: faults["503"] >= 4 and len(loop._undeleted) == 1, lambda: (faults, loop._undeleted))
        assert [o.status for o in loop.report.outcomes] == ["duplicate"]
        through_proxy.block()
    report = reports[0]
    assert [(o.job_id, o.status) for o in report.outcomes] == [("r1", "duplicate")], report.to_dict()
    assert report.released == 0 and not loop._undeleted
    assert through_proxy.forwarded["DeleteMessageBatch"] >= 1 and through_proxy.forwarded["DeleteMessage"] == 0
    assert JobQueue(qs).counts("normal") == {"visible": 0, "in_flight": 0, "delayed": 0}
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=out_bucket).get("Contents", [])]
    assert keys == ["t/r1.done.json"]  # not transcribed again
    assert Storage(qs).read_text(f"s3://{out_bucket}/t/r1.done.json") == marker


def test_finished_messages_are_deleted_in_batches(moto_server: MotoServer) -> None:
    """Twelve messages go in two requests; one whose lease is not ours comes back as failed, not as an error."""
    import dataclasses

    from rayscribe.queue import infra

    names = unique_queue_env("delete")
    qs = _settings(names)
    infra.up(qs)
    queue = JobQueue(qs)
    queue.send("normal", [json.dumps({"n": i}) for i in range(12)])
    received: list[Any] = []
    deadline = time.monotonic() + 30
    while len(received) < 12:
        assert time.monotonic() < deadline, len(received)
        received += queue.receive("normal", 10, 1)
    bogus = dataclasses.replace(received[0], receipt_handle="not-a-receipt-handle", message_id="bogus")
    failed = queue.delete_many([*received, bogus])
    assert [m.message_id for m in failed] == ["bogus"]
    assert queue.counts("normal")["visible"] == 0 and queue.counts("normal")["in_flight"] == 0


def test_a_job_whose_input_read_keeps_failing_ends_in_the_dlq_with_its_reason(
        ray_connected: Any, moto_server: MotoServer, through_proxy: FaultProxy) -> None:
    """Every read of the job's input fails for a transient reason (S3 answers 503), on every receive: after its
    local retries the message goes back to SQS, and on the ``RAYSCRIBE_MAX_RECEIVE_COUNT``-th receive the worker
    moves it to the dead-letter queue with its last reason and writes its error record."""
    from rayscribe.config.settings import load_settings
    from rayscribe.queue import infra

    names = unique_queue_env("exhaust")
    # 2.5 s of local retries per receive ((visibility - heartbeat) / 2), then back to SQS at once
    qs = _settings(names, aws_max_attempts=2, max_receive_count=2, visibility_timeout=10, heartbeat_seconds=5)
    infra.up(qs)
    in_bucket, out_bucket = names["RAYSCRIBE_INPUT_BUCKET"], names["RAYSCRIBE_OUTPUT_BUCKET"]
    boto3.client("s3").upload_file(str(CLIPS["jfk"]), in_bucket, "raw/jfk.mp3")
    settings = load_settings(backend="simulated", simulated_speed=20.0, workers=1, cpus_per_worker=0.1,
                             gpu_per_worker=0, output_formats=["txt"])
    through_proxy.block("GET s3")  # the input never reads; writes (the error record) and SQS go through
    JobQueue(qs).send("normal", [json.dumps({"job_id": "x1", "s3_input_path": f"s3://{in_bucket}/raw/jfk.mp3",
                                             "s3_output_path": f"s3://{out_bucket}/t/"})])
    with _draining_loop(settings, qs) as (_, reports):
        pass
    through_proxy.block()  # S3 reads again, for the checks below
    report = reports[0]
    statuses = [o.status for o in report.outcomes]
    assert statuses.count("retry") == 1 and statuses[-1] == "failed", report.to_dict()  # receive 1, then 2: DLQ
    assert all("cannot read the input" in o.reason for o in report.outcomes)
    assert through_proxy.forwarded["GET s3"] == 0 and through_proxy.injected["503"] >= 4

    queue = JobQueue(qs)
    assert queue.counts("normal") == {"visible": 0, "in_flight": 0, "delayed": 0}
    dead = queue.peek_dlq()
    assert len(dead) == 1, [d.attributes for d in dead]
    attributes = dead[0].attributes
    assert attributes["job_id"] == "x1" and attributes["error_type"] == "RetriesExhausted"
    assert attributes["receive_count"] == "2"
    assert "retries exhausted after 2 receive(s)" in attributes["error_reason"]
    assert "last: cannot read the input" in attributes["error_reason"]
    record = json.loads(boto3.client("s3").get_object(Bucket=out_bucket, Key="t/x1.error.json")["Body"].read())
    assert (record["status"], record["type"], record["attempt"]) == ("failed", "RetriesExhausted", 2)
    assert record["reason"] == attributes["error_reason"]
