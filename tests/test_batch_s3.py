"""Batch over S3 (moto server): ``rayscribe transcribe s3://bucket/prefix/ --out s3://...`` and ``python -m
jobs.batch`` with S3 inputs; keys listed page by page, named after the key below the prefix, non-audio keys
skipped, reruns resume, a corrupt object fails alone, and the workers (not the driver) read the audio."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from rayscribe.batch_outputs import BatchOutputs
from rayscribe.config.queue import load_queue_settings
from rayscribe.file_jobs import InputError
from rayscribe.s3_inputs import list_s3_inputs
from rayscribe.storage import Storage
from tests.outputs import check_output_folder
from tests.speech import SAMPLES, references, wer
from tests.test_cli import run_cli

FORMATS = ("txt", "srt", "vtt", "json")
JFK = (SAMPLES / "jfk.mp3").read_bytes()
LJ = (SAMPLES / "LJ001-0001.wav").read_bytes()
AUSTEN = "sense_and_sensibility_01_austen_64kb-0870.wav"


@pytest.fixture
def s3(moto_server):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3")


def _bucket(s3, objects: dict[str, bytes]) -> str:  # type: ignore[no-untyped-def]
    name = f"rs-batch-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    for key, body in objects.items():
        s3.put_object(Bucket=name, Key=key, Body=body)
    return name


def _keys(s3, bucket: str, prefix: str = "") -> set[str]:  # type: ignore[no-untyped-def]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


# -- listing and naming, without Ray ------------------------------------------------------------------------


def test_a_prefix_lists_audio_keys_named_below_it_and_clashing_stems_keep_their_extension(s3) -> None:
    bucket = _bucket(s3, {k: b"x" for k in (
        "in/a.mp3", "in/day1/talk.mp3", "in/day1/talk.part2.mp3", "in/day1/talk.wav", "in/day1/talk.txt",
        "in/day1/z.FLAC", "in/notes.pdf", "in/sub/", "inbox/other.mp3", "out/ignored.mp3")})
    storage = Storage(load_queue_settings())
    items = list(list_s3_inputs(f"s3://{bucket}/in", storage))  # no closing slash: still the folder in/
    named = {i.source.removeprefix(f"s3://{bucket}/"): i.key for i in items}
    assert named == {"in/a.mp3": "a", "in/day1/talk.mp3": "day1/talk.mp3", "in/day1/talk.wav": "day1/talk.wav",
                     "in/day1/talk.part2.mp3": "day1/talk.part2", "in/day1/z.FLAC": "day1/z"}
    assert all(i.name == i.source and i.duration is None for i in items)
    one = list(list_s3_inputs(f"s3://{bucket}/in/notes.pdf", storage))  # an object named alone is taken
    assert [(i.key, i.source) for i in one] == [("notes", f"s3://{bucket}/in/notes.pdf")]
    whole = {i.key for i in list_s3_inputs(f"s3://{bucket}", storage)}
    assert {"in/a", "inbox/other", "out/ignored"} <= whole
    with pytest.raises(InputError, match="bucket 'no-such-bucket-rs' does not exist"):
        list(list_s3_inputs("s3://no-such-bucket-rs/in/", storage))


def test_keys_are_listed_lazily_one_page_at_a_time(s3, monkeypatch) -> None:
    """Work can start after the first page: taking the first items makes one list request, not one per page."""
    import rayscribe.s3_inputs as s3_inputs

    bucket = _bucket(s3, {f"in/{i:03d}.wav": b"x" for i in range(25)})
    monkeypatch.setattr(s3_inputs, "PAGE_SIZE", 5)
    storage = Storage(load_queue_settings())
    requests: list[str] = []
    storage.s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: requests.append("list"))
    items = list_s3_inputs(f"s3://{bucket}/in/", storage)
    first = [next(items) for _ in range(3)]
    assert [i.key for i in first] == ["000", "001", "002"] and len(requests) == 1
    rest = list(items)
    assert len(rest) == 22 and len(requests) == 5


def test_s3_outputs_resume_rule_and_keys_that_cannot_name_an_output(s3) -> None:
    from rayscribe.transcript import Segment, Transcript
    from rayscribe.work import WorkItem

    bucket = _bucket(s3, {})
    outputs = BatchOutputs(f"s3://{bucket}/out/", FORMATS, lambda: Storage(load_queue_settings()))
    outputs.check()
    transcript = Transcript(segments=[Segment(id=0, start=0.0, end=1.0, text="hello")], language="en", duration=1.0)
    outputs.write(transcript, "day1/talk")
    assert _keys(s3, bucket) == {f"out/day1/talk{ext}" for ext in (".txt", ".srt", ".vtt", ".json")}
    s3.put_object(Bucket=bucket, Key="out/half.txt", Body=b"x")  # one format only: not done
    items = [WorkItem(key=k, name=k, source=f"s3://in/{k}.mp3") for k in ("day1/talk", "half", "new", "../up")]
    skipped: list[str] = []
    failed = []
    todo = [i.key for i in outputs.pending(items, skipped, failed.append)]
    assert todo == ["half", "new"] and skipped == ["day1/talk"]
    assert [f.key for f in failed] == ["../up"] and "would leave the output folder" in (failed[0].error or "")
    with pytest.raises(InputError, match="bucket 'no-such-out-rs' does not exist"):
        BatchOutputs("s3://no-such-out-rs/x/", FORMATS, lambda: Storage(load_queue_settings())).check()


# -- the whole path, on the session's Ray cluster -----------------------------------------------------------


def test_cli_s3_prefix_and_a_local_file_to_s3_out_resumes_and_a_corrupt_object_fails_alone(
        ray_cluster, s3, tmp_path: Path) -> None:
    """Simulated engine (the plumbing is under test, not the text): nested keys, a non-audio key, a corrupt
    object, and a local file beside the prefix, all into an S3 --out; then a rerun."""
    bucket = _bucket(s3, {"audio/jfk.mp3": JFK, "audio/day1/lj.wav": LJ, "audio/day1/notes.txt": b"not audio",
                          "audio/day1/deep/broken.mp3": b"ID3" + b"\x00garbage" * 200})
    local = tmp_path / "local.wav"
    local.write_bytes(LJ)
    env = {"RAYSCRIBE_BACKEND": "simulated", "RAYSCRIBE_WORKERS": "1", "COLUMNS": "400"}
    args = ("transcribe", f"s3://{bucket}/audio/", str(local), "--out", f"s3://{bucket}/transcripts/",
            "--address", ray_cluster.address, "--format", ",".join(FORMATS))
    proc = run_cli(*args, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"s3://{bucket}/audio/day1/deep/broken.mp3" in proc.stderr and "cannot decode audio" in proc.stderr
    outputs = _keys(s3, bucket, "transcripts/")
    expected = {f"transcripts/{stem}{ext}" for stem in ("jfk", "day1/lj", "local")
                for ext in (".txt", ".srt", ".vtt", ".json")}
    assert outputs == expected | {"transcripts/rayscribe-summary.json"}
    summary = json.loads(s3.get_object(Bucket=bucket, Key="transcripts/rayscribe-summary.json")["Body"].read())
    assert summary["transcribed"] == 3 and summary["skipped"] == []
    assert [f["file"] for f in summary["failed"]] == [f"s3://{bucket}/audio/day1/deep/broken.mp3"]
    assert "cannot decode audio" in summary["failed"][0]["error"]
    body = json.loads(s3.get_object(Bucket=bucket, Key="transcripts/day1/lj.json")["Body"].read())
    assert body["metadata"]["audio_seconds"] > 9 and body["metadata"]["file"] == f"s3://{bucket}/audio/day1/lj.wav"

    again = run_cli(*args, env=env)  # a rerun skips what is done and tries the corrupt one again
    assert again.returncode == 1, again.stdout + again.stderr
    summary = json.loads(s3.get_object(Bucket=bucket, Key="transcripts/rayscribe-summary.json")["Body"].read())
    assert summary["transcribed"] == 0 and len(summary["failed"]) == 1
    assert sorted(summary["skipped"]) == sorted([f"s3://{bucket}/audio/day1/lj.wav",
                                                 f"s3://{bucket}/audio/jfk.mp3", str(local)])


def test_s3_input_errors_are_one_line_before_any_work(s3, tmp_path: Path, capsys) -> None:
    from jobs.batch import main

    bucket = _bucket(s3, {"audio/notes.txt": b"not audio"})
    for argv, message in (([f"s3://{bucket}/audio/"], "no audio objects found under"),
                          (["s3://no-such-bucket-rs/audio/"], "bucket 'no-such-bucket-rs' does not exist"),
                          (["s3:///audio/"], "names no bucket")):
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert main([str(SAMPLES / "jfk.mp3"), "--out", "s3://no-such-out-rs/t/"]) == 2
    assert "bucket 'no-such-out-rs' does not exist" in capsys.readouterr().err


def test_job_entrypoint_reads_s3_inputs_on_the_workers_with_the_real_model(ray_cluster, s3, tmp_path: Path,
                                                                           monkeypatch, capsys) -> None:
    """``python -m jobs.batch`` with S3 inputs (a prefix and one object) and a local --out: the real model's text,
    and the driver never reads an input (its storage reads are made to fail here; the workers' are not)."""
    import ray

    from jobs.batch import main

    joined = ray.is_initialized()  # the session's connection has no runtime env: the workers need moto's keys
    if joined:
        ray.shutdown()
    bucket = _bucket(s3, {"in/lj.wav": LJ, "in/more/austen.wav": (SAMPLES / AUSTEN).read_bytes(),
                          "single/jfk.mp3": JFK})

    def no_driver_reads(self, url):  # type: ignore[no-untyped-def]
        raise AssertionError(f"the driver read {url}")

    monkeypatch.setattr(Storage, "read_bytes", no_driver_reads)
    out = tmp_path / "out"
    try:
        code = main([f"s3://{bucket}/in/", f"s3://{bucket}/single/jfk.mp3", "--out", str(out), "--address",
                     ray_cluster.address, "--no-verbose", "--format", ",".join(FORMATS)])
    finally:  # leave the session's connection as the later tests expect it (tests/conftest.py: ray_connected)
        if ray.is_initialized():
            ray.shutdown()
        if joined:
            ray.init(address=ray_cluster.address, log_to_driver=False)
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    assert "done 3" in printed.out
    transcripts = check_output_folder(out, ["lj", "more/austen", "jfk"], FORMATS)
    refs = references(str(SAMPLES))
    names = {"lj": "LJ001-0001.wav", "more/austen": AUSTEN, "jfk": "jfk.mp3"}
    error = wer([refs[n] for n in names.values()], [transcripts[s].text for s in names])
    assert error < 0.15, {s: t.text for s, t in transcripts.items()}
