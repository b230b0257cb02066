"""The job message schema: the predecessor's messages accepted as they are, bad ones rejected by field."""

from __future__ import annotations

import json

import pytest

from rayscribe.queue.jobspec import JobSpec, JobSpecError, output_base, parse_job, salvage

PREDECESSOR = {"job_id": "abc-123", "s3_input_path": "s3://in/audio/a.mp3",
               "s3_output_path": "s3://out/transcripts/", "priority": "normal"}


def test_the_predecessors_message_is_version_1() -> None:
    spec = parse_job(json.dumps(PREDECESSOR))
    assert (spec.version, spec.job_id, spec.priority, spec.formats, spec.webhook_url) == (1, "abc-123", "normal",
                                                                                         None, None)
    assert json.loads(spec.to_message()) == {**PREDECESSOR, "version": 1}


@pytest.mark.parametrize(("given", "expected"), [("high", "high"), ("HIGH", "high"), (2, "high"), (1, "normal"),
                                                 (0, "normal"), ("low", "normal"), (None, "normal")])
def test_priority_words_and_numbers(given: object, expected: str) -> None:
    assert parse_job(json.dumps({**PREDECESSOR, "priority": given})).priority == expected


def test_optional_fields_and_unknown_keys() -> None:
    spec = parse_job(json.dumps({**PREDECESSOR, "formats": ["srt", "txt", "srt"], "language": "DE",
                                 "model": "tiny.en", "webhook_url": "http://127.0.0.1:1/hook", "analyze": True,
                                 "from_the_future": 1}))
    assert spec.formats == ["srt", "txt"] and spec.language == "de" and spec.analyze is True


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"version": 2}, ["version", "unsupported version 2"]),
        ({"job_id": "../etc/passwd"}, ["job_id", "letters, digits"]),
        ({"formats": ["pdf"]}, ["formats", "pdf", "verbose_json"]),
        ({"priority": "whenever"}, ["priority", "'normal' or 'high'"]),
        ({"language": "english!"}, ["language", "ISO 639-1"]),
        ({"webhook_url": "ftp://x"}, ["webhook_url", "http(s)"]),
        ({"s3_input_path": "gs://bucket/a.wav"}, ["s3_input_path", "only s3://"]),
        ({"s3_output_path": "s3:///key"}, ["s3_output_path", "names no bucket"]),
    ],
)
def test_bad_fields_are_named(change: dict, fragments: list[str]) -> None:
    with pytest.raises(JobSpecError) as info:
        parse_job(json.dumps({**PREDECESSOR, **change}))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_fields_and_non_objects() -> None:
    with pytest.raises(JobSpecError, match=r"s3_input_path: missing"):
        parse_job(json.dumps({"job_id": "x", "s3_output_path": "s3://o/"}))
    with pytest.raises(JobSpecError, match="not JSON"):
        parse_job("{oops")
    with pytest.raises(JobSpecError, match="not an object"):
        parse_job("[1, 2]")


def test_output_base_folder_or_file() -> None:
    assert output_base("s3://out/transcripts/", "j1") == "s3://out/transcripts/j1"
    assert output_base("s3://out/transcripts", "j1") == "s3://out/transcripts/j1"
    assert output_base("s3://out/t/result.json", "j1") == "s3://out/t/result"
    assert output_base("/data/out/", "j1") == "/data/out/j1"


def test_salvage_reads_what_it_can() -> None:
    assert salvage(json.dumps({"job_id": "ok-1", "s3_output_path": "s3://o/", "version": 9})) == {
        "job_id": "ok-1", "s3_output_path": "s3://o/"}
    assert salvage(json.dumps({"job_id": "../x"})) == {}
    assert salvage("not json") == {}


def test_model_defaults_are_not_account_specific() -> None:
    assert JobSpec(job_id="a", s3_input_path="/x.wav", s3_output_path="/o").priority == "normal"


@pytest.mark.parametrize(("given", "expected"), [("translate", "translate"), ("Transcribe", "transcribe"),
                                                 ("", None), (None, None)])
def test_task_is_checked_like_language(given: object, expected: str | None) -> None:
    spec = parse_job(json.dumps({**PREDECESSOR, "task": given}))
    assert spec.task == expected
    assert ("task" in json.loads(spec.to_message())) == (expected is not None)


def test_an_unknown_task_is_refused_naming_the_field() -> None:
    with pytest.raises(JobSpecError) as info:
        parse_job(json.dumps({**PREDECESSOR, "task": "summarise"}))
    assert "task" in str(info.value) and "translate" in str(info.value)
