"""OpenAI parity that other projects' client tests found, and translations refused by an English-only model.

The simulated engine answers here (the model's words are not what these tests check), with the model setting
``tiny.en`` so the service is English-only. Answers are read with the official ``openai`` client, with its
strict response validation on where the shape is what the test checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent

from jobs.harness.audio import tone, wav_bytes
from tests.fixtures_serve import APP_NAME, TEST_KEY, ServeApp, ServeInstance, deploy

# openai marks translations.create deprecated (whisper-1's announced shutdown); the route is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

SECONDS = 9.655  # OpenAI bills this as 10 s


@pytest.fixture(scope="module")
def english_app(serve_instance: ServeInstance) -> Iterator[ServeApp]:
    from ray import serve

    app = deploy(serve_instance, model="tiny.en", backend="simulated", simulated_speed=200.0)
    yield app
    serve.delete(APP_NAME)


@pytest.fixture(scope="module")
def clip() -> bytes:
    return wav_bytes(tone(SECONDS))


def _post(app: ServeApp, route: str, clip: bytes, data: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{app.base_url}/v1/audio/{route}", headers={"Authorization": f"Bearer {TEST_KEY}"},
                      files={"file": ("clip.wav", clip, "audio/wav")}, data={"model": "whisper-1", **data},
                      timeout=60)


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["message", "type", "param", "code"]
    return dict(body["error"])


# -- translations on an English-only model --------------------------------------------------------------


def test_translation_on_an_english_only_model_is_a_400(english_app: ServeApp, clip: bytes) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        english_app.client().audio.translations.create(model="whisper-1", file=("clip.wav", clip))
    assert info.value.status_code == 400
    assert info.value.code == "model_not_multilingual"
    assert info.value.param == "model"  # type: ignore[attr-defined]
    assert "English-only" in info.value.message and "tiny.en" in info.value.message


def test_the_english_only_refusal_comes_before_decoding(english_app: ServeApp) -> None:
    """Not audio at all: the model's refusal is the answer, so a client learns what to fix first."""
    error = _error(_post(english_app, "translations", b"not audio", {"stream": "true"}), 400)
    assert error["code"] == "model_not_multilingual"


def test_transcriptions_still_work_on_the_english_only_model(english_app: ServeApp, clip: bytes) -> None:
    result = english_app.client().audio.transcriptions.create(model="whisper-1", file=("clip.wav", clip))
    assert result.text.startswith("simulated")


def test_models_say_english_only_and_transcribe_only(english_app: ServeApp) -> None:
    body = httpx.get(f"{english_app.base_url}/v1/models", headers={"Authorization": f"Bearer {TEST_KEY}"},
                     timeout=30).json()
    assert [m["id"] for m in body["data"]] == ["whisper-1", "tiny.en"]
    for card in body["data"]:
        assert card["root"] == "tiny.en" and card["languages"] == ["en"] and card["tasks"] == ["transcribe"]
    card = english_app.client().models.retrieve("whisper-1")
    assert card.model_extra == {"root": "tiny.en", "languages": ["en"], "tasks": ["transcribe"]}


# -- timestamp_granularities[] ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt"])
def test_granularities_need_verbose_json(english_app: ServeApp, clip: bytes, fmt: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        english_app.client().audio.transcriptions.create(
            model="whisper-1", file=("clip.wav", clip), response_format=fmt,  # type: ignore[call-overload]
            timestamp_granularities=["word"])
    assert info.value.body["message"] == (  # type: ignore[index]
        "`response_format` must be `verbose_json` if `timestamp_granularities[]` is provided")
    assert info.value.param == "timestamp_granularities[]"  # type: ignore[attr-defined]


def test_granularities_with_verbose_json_give_words(english_app: ServeApp, clip: bytes) -> None:
    result = english_app.client().audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", clip), response_format="verbose_json",
        timestamp_granularities=["word"])
    assert result.words and result.segments is None


# -- usage -------------------------------------------------------------------------------------------


def test_usage_is_whole_seconds_rounded_up(english_app: ServeApp, clip: bytes) -> None:
    client = english_app.client(_strict_response_validation=True)
    plain = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", clip))
    verbose = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", clip),
                                                 response_format="verbose_json")
    assert verbose.duration == pytest.approx(SECONDS, abs=0.001)
    for result in (plain, verbose):
        assert result.usage is not None and result.usage.type == "duration"
        assert result.usage.seconds == 10
    raw = _post(english_app, "transcriptions", clip, {}).json()
    assert raw["usage"] == {"type": "duration", "seconds": 10}  # an integer on the wire, as OpenAI sends


# -- streaming ---------------------------------------------------------------------------------------


def test_the_old_done_event_fails_the_sdk_types() -> None:
    """The shape this server used to send: what the next test would catch if it came back."""
    with pytest.raises(pydantic.ValidationError):
        TranscriptionTextDoneEvent.model_validate({"type": "transcript.text.done", "text": "hi",
                                                   "usage": {"type": "duration", "seconds": 10}})


def test_every_streamed_event_passes_the_sdks_strict_validation(english_app: ServeApp, clip: bytes) -> None:
    client = english_app.client(_strict_response_validation=True)
    events = list(client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", clip), stream=True))
    assert [type(e) for e in events[:-1]] == [TranscriptionTextDeltaEvent] * (len(events) - 1)
    assert len(events) >= 2 and isinstance(events[-1], TranscriptionTextDoneEvent)
    done = events[-1]
    assert done.text == "".join(e.delta for e in events[:-1])  # type: ignore[union-attr]
    assert done.usage is None
    assert [language.code for language in done.languages or []] == ["en"]
