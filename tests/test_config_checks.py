"""One language-code check and one output-format check, shared by settings, queue messages and the HTTP API:
a value refused by one is refused by all, with the same message."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from rayscribe.config.checks import LANGUAGE_NAMES, check_language_code, check_output_formats
from rayscribe.config.settings import load_settings
from rayscribe.config.voxtral import load_voxtral_settings
from rayscribe.errors import SettingsError
from rayscribe.queue.jobspec import JobSpecError, parse_job
from serve.schemas import TranscriptionRequest

JOB = {"job_id": "j1", "s3_input_path": "s3://in/a.wav", "s3_output_path": "s3://out/"}


def _http_error(language: str) -> str:
    with pytest.raises(ValidationError) as info:
        TranscriptionRequest(model="whisper-1", language=language)
    return str(info.value.errors()[0]["msg"]).removeprefix("Value error, ")


@pytest.mark.parametrize("code", ["xx", "klingon", "english", "zzz", "e1"])
def test_a_code_the_http_api_refuses_is_refused_everywhere_with_one_message(
    monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    with pytest.raises(ValueError) as direct:
        check_language_code(code)
    message = str(direct.value)
    assert "ISO 639-1" in message
    assert _http_error(code) == message
    with pytest.raises(JobSpecError) as queued:
        parse_job(json.dumps({**JOB, "language": code}))
    assert str(queued.value) == f"invalid job message: language: {message}"
    monkeypatch.setenv("RAYSCRIBE_LANGUAGE", code)
    with pytest.raises(SettingsError) as configured:
        load_settings()
    assert f"RAYSCRIBE_LANGUAGE={code!r}: {message}" in str(configured.value)
    monkeypatch.delenv("RAYSCRIBE_LANGUAGE")
    monkeypatch.setenv("RAYSCRIBE_VOXTRAL_LANGUAGE", code)
    with pytest.raises(SettingsError) as voxtral:
        load_voxtral_settings()
    assert f"RAYSCRIBE_VOXTRAL_LANGUAGE={code!r}: {message}" in str(voxtral.value)


@pytest.mark.parametrize("code", ["en", "DE", " fr ", "yue", "haw"])
def test_a_code_whisper_knows_is_accepted_everywhere_in_lower_case(
    monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    expected = code.strip().lower()
    assert expected in LANGUAGE_NAMES
    assert check_language_code(code) == expected
    assert TranscriptionRequest(model="whisper-1", language=code).language == expected
    assert parse_job(json.dumps({**JOB, "language": code})).language == expected
    monkeypatch.setenv("RAYSCRIBE_LANGUAGE", code)
    assert load_settings().language == expected


def test_unset_language_stays_unset() -> None:
    assert check_language_code(None) is None
    assert TranscriptionRequest(model="whisper-1", language=" ").language is None
    assert parse_job(json.dumps({**JOB, "language": ""})).language is None


@pytest.mark.parametrize(("formats", "fragment"), [(["srt", "docx"], "unknown format(s) docx"),
                                                   ([], "at least one format is needed")])
def test_bad_output_formats_are_refused_alike_by_settings_and_queue_messages(
    monkeypatch: pytest.MonkeyPatch, formats: list[str], fragment: str
) -> None:
    with pytest.raises(ValueError) as direct:
        check_output_formats(formats)
    message = str(direct.value)
    assert fragment in message and "verbose_json" in message
    with pytest.raises(JobSpecError) as queued:
        parse_job(json.dumps({**JOB, "formats": formats}))
    assert str(queued.value) == f"invalid job message: formats: {message}"
    monkeypatch.setenv("RAYSCRIBE_OUTPUT_FORMATS", ",".join(formats) or ",")
    with pytest.raises(SettingsError) as configured:
        load_settings()
    assert f": {message}" in str(configured.value)


def test_output_formats_keep_their_order_without_repeats() -> None:
    assert check_output_formats(["srt", "txt", "srt"]) == ["srt", "txt"]
    assert parse_job(json.dumps({**JOB, "formats": ["srt", "txt", "srt"]})).formats == ["srt", "txt"]
