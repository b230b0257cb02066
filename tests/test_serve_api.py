"""The HTTP API through the official ``openai`` package, unchanged, against real Ray Serve and the real model.

Every answer is compared with the engine called directly on the same clip (the batch path's engine and
options), so the HTTP layer is shown to add nothing and lose nothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from jobs.harness.audio import wav_bytes
from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.engines import TranscribeOptions
from rayscribe.formatters import format_transcript
from rayscribe.transcript import Transcript
from tests.fixtures_serve import APP_NAME, ServeApp
from tests.speech import SAMPLES, references, require_speech, wer


@pytest.fixture(scope="module")
def jfk() -> Path:
    return require_speech() / "jfk" / "jfk.wav"


@pytest.fixture(scope="module")
def direct(fw_engine: Any, serve_app: ServeApp) -> Any:
    """The engine called in-process with the options the app's replica uses."""
    options = TranscribeOptions.from_settings(serve_app.settings)

    def run(path: Path, **changes: Any) -> Transcript:
        return fw_engine.transcribe(decode_audio(path), options.with_(**changes))  # type: ignore[no-any-return]

    return run


def test_models_lists_the_configured_names(serve_app: ServeApp) -> None:
    client = serve_app.client()
    assert [m.id for m in client.models.list()] == ["whisper-1", "tiny.en"]
    assert client.models.retrieve("whisper-1").owned_by == "rayscribe"


def test_json_text_equals_the_direct_engine(serve_app: ServeApp, jfk: Path, direct: Any) -> None:
    with jfk.open("rb") as fh:
        result = serve_app.client().audio.transcriptions.create(model="whisper-1", file=fh)
    expected = direct(jfk)
    assert result.text == expected.text
    assert "ask not what your country can do for you" in result.text.lower()
    assert result.usage is not None and result.usage.seconds == pytest.approx(11.0, abs=0.1)


def test_server_timing_says_where_the_time_went(serve_app: ServeApp, jfk: Path) -> None:
    response = httpx.post(f"{serve_app.base_url}/v1/audio/transcriptions", timeout=120,
                          headers={"Authorization": f"Bearer {serve_app.api_key}"},
                          files={"file": ("jfk.wav", jfk.read_bytes(), "audio/wav")}, data={"model": "whisper-1"})
    assert response.status_code == 200
    timing = {name: float(ms) for name, ms in
              (part.split(";dur=") for part in response.headers["server-timing"].split(", "))}
    assert set(timing) == {"read-decode", "model", "queue", "engine"}
    assert 0 < timing["read-decode"] < timing["model"]  # decoding 11 s is quicker than transcribing
    # the replica's queue wait and engine time are parts of the ingress's whole call to it
    assert timing["engine"] > 0 and timing["queue"] >= 0
    assert timing["queue"] + timing["engine"] <= timing["model"]


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_text_formats_equal_the_formatters(serve_app: ServeApp, jfk: Path, direct: Any, fmt: str) -> None:
    with jfk.open("rb") as fh:
        result = serve_app.client().audio.transcriptions.create(model="whisper-1", file=fh, response_format=fmt)
    expected = direct(jfk)
    assert isinstance(result, str)
    if fmt == "text":
        assert result.strip() == expected.text
    else:
        assert result == format_transcript(expected, fmt)


@pytest.mark.parametrize(
    ("granularities", "words", "segments"),
    [(None, False, True), (["word"], True, False), (["word", "segment"], True, True)],
)
def test_verbose_json_granularities(serve_app: ServeApp, jfk: Path, direct: Any, granularities: Any,
                                    words: bool, segments: bool) -> None:
    extra = {"timestamp_granularities": granularities} if granularities else {}
    with jfk.open("rb") as fh:
        result = serve_app.client().audio.transcriptions.create(
            model="tiny.en", file=fh, response_format="verbose_json", **extra)
    expected = direct(jfk)
    assert result.text == expected.text
    assert result.language == "english"
    assert result.duration == pytest.approx(11.0, abs=0.1)
    assert (result.words is not None) == words
    assert (result.segments is not None) == segments
    if words:
        assert [w.word for w in result.words] == [w.word.strip() for w in expected.words]
        assert all(0 <= w.start <= w.end <= result.duration + 0.01 for w in result.words)
    if segments:
        assert [s.text for s in result.segments] == [s.text for s in expected.segments]
        assert result.segments[0].start == pytest.approx(expected.segments[0].start)


def test_language_prompt_and_temperature_reach_the_engine(serve_app: ServeApp, direct: Any) -> None:
    clip = SAMPLES / "LJ001-0001.wav"
    prompt = "Printing. The Exhibition."
    with clip.open("rb") as fh:
        result = serve_app.client().audio.transcriptions.create(
            model="whisper-1", file=fh, language="en", prompt=prompt, temperature=0.0)
    assert result.text == direct(clip, language="en", initial_prompt=prompt).text
    assert wer([references(str(SAMPLES))["LJ001-0001.wav"]], [result.text]) < 0.15


def test_mp3_upload(serve_app: ServeApp, direct: Any) -> None:
    clip = SAMPLES / "jfk.mp3"
    with clip.open("rb") as fh:
        result = serve_app.client().audio.transcriptions.create(model="whisper-1", file=fh)
    assert result.text == direct(clip).text


def test_streaming_deltas_add_up_to_the_text(serve_app: ServeApp, jfk: Path, direct: Any) -> None:
    with jfk.open("rb") as fh:
        stream = serve_app.client().audio.transcriptions.create(model="whisper-1", file=fh, stream=True)
        events = list(stream)
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert deltas and len(done) == 1
    assert "".join(d.delta for d in deltas) == done[0].text == direct(jfk).text


def test_streaming_long_audio_comes_in_spans(serve_app: ServeApp) -> None:
    """Over 30 s, the audio is decoded span by span: several deltas, times running on across spans."""
    root = require_speech() / "ljspeech"
    names = sorted(references(str(root)))[:8]
    audio = np.concatenate([decode_audio(root / n) for n in names])
    assert audio.shape[0] / SAMPLE_RATE > 45
    stream = serve_app.client().audio.transcriptions.create(
        model="whisper-1", file=("long.wav", wav_bytes(audio)), stream=True)
    events = list(stream)
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 2
    ends = [d.model_extra["end"] for d in deltas]  # type: ignore[index]
    assert ends == sorted(ends) and ends[-1] > 40
    refs = " ".join(references(str(root))[n] for n in names)
    assert wer([refs], [events[-1].text]) < 0.15


def test_concurrent_requests_are_batched(serve_app: ServeApp) -> None:
    """Eight requests at once: all answered correctly, and the replica ran some of them as one batch."""
    from ray import serve

    root = require_speech() / "ljspeech"
    refs = references(str(root))
    names = sorted(refs)[8:16]
    client = serve_app.client()

    def one(name: str) -> str:
        with (root / name).open("rb") as fh:
            return str(client.audio.transcriptions.create(model="whisper-1", file=fh).text)

    with ThreadPoolExecutor(len(names)) as pool:
        texts = list(pool.map(one, names))
    assert wer([refs[n] for n in names], texts) < 0.15
    info = serve.get_deployment_handle("WhisperDeployment", APP_NAME).info.remote().result(timeout_s=30)
    assert info["largest_batch"] > 1, info


def test_health_has_the_predecessors_fields(serve_app: ServeApp) -> None:
    response = httpx.get(f"{serve_app.base_url}/health", timeout=30)
    body = response.json()
    assert tuple(body)[:6] == ("status", "timestamp", "uptime", "gpu_available", "worker_running", "container_id")
    assert response.status_code == 200 and body["status"] == "healthy" and body["worker_running"] is True
    assert body["mode"] == "serve" and body["reasons"] == [] and body["workers"] == {"wanted": 1, "up": 1}
    assert body["voxtral"] == "off" and isinstance(body["jobs_done"], int) and body["jobs_failed"] >= 0
    assert body["gpu_available"] is False
    assert body["models"] == ["whisper-1", "tiny.en"]
    assert body["replicas"] == {"ingress": 1, "whisper": 1}
    assert body["engine"]["device"] == "cpu"
