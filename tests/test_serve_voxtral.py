"""Audio understanding over HTTP with the tiny Voxtral: /v1/audio/analyze and the hybrid SSE route on a real Serve
app (the session cluster), error shapes and limits as on the transcription route, Voxtral failures isolated from
the transcript, a clear 404 when Voxtral is off and a 503 when its model can't load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures_serve import APP_NAME, ServeApp, ServeInstance, deploy

JFK = Path(__file__).resolve().parents[1] / "samples" / "jfk.mp3"

pytestmark = pytest.mark.voxtral


@pytest.fixture(scope="module")
def vox_app(serve_instance: ServeInstance, tiny_voxtral: Path) -> Iterator[ServeApp]:
    from ray import serve

    app = deploy(serve_instance, voxtral_enabled=True, voxtral_model=str(tiny_voxtral), voxtral_cpus=0.5,
                 voxtral_max_new_tokens=4)
    yield app
    serve.delete(APP_NAME)


def post(app: ServeApp, route: str, data: dict[str, Any], content: bytes | None = None,
         key: str | None = "default") -> httpx.Response:
    headers = {"Authorization": f"Bearer {app.api_key if key == 'default' else key}"} if key else {}
    files = {"file": ("jfk.mp3", JFK.read_bytes() if content is None else content)}
    return httpx.post(f"{app.base_url}{route}", data=data, files=files, headers=headers, timeout=180)


def sse(response: httpx.Response) -> list[tuple[str, Any]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        name = next((line[7:] for line in block.splitlines() if line.startswith("event: ")), "message")
        data = next(line[6:] for line in block.splitlines() if line.startswith("data: "))
        events.append((name, data if data == "[DONE]" else json.loads(data)))
    return events


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code and "Traceback" not in body["error"]["message"]
    return dict(body["error"])


def test_analyze_summary(vox_app: ServeApp) -> None:
    response = post(vox_app, "/v1/audio/analyze", {"task": "summary"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "audio.analysis" and body["model"] == "tiny-voxtral" and body["task"] == "summary"
    assert isinstance(body["text"], str) and 1 <= body["usage"]["output_tokens"] <= 4
    assert body["usage"]["seconds"] == pytest.approx(11.0, abs=0.2) and body["pieces"] == 1
    timings = body["timings"]
    assert timings["total_seconds"] >= timings["model_seconds"] >= timings["generate_seconds"] > 0


def test_analyze_question_with_limits(vox_app: ServeApp) -> None:
    response = post(vox_app, "/v1/audio/analyze", {"task": "question", "prompt": "Who speaks?",
                                                   "max_new_tokens": "2"})
    assert response.status_code == 200, response.text
    assert response.json()["prompt"] == "Who speaks?" and response.json()["usage"]["output_tokens"] <= 2


@pytest.mark.parametrize(("data", "content", "key", "status", "code"), [
    ({"task": "question"}, None, "default", 400, "missing_required_parameter"),
    ({"task": "poem"}, None, "default", 400, "invalid_value"),
    ({"task": "summary", "max_new_tokens": "900"}, None, "default", 400, "invalid_analysis_request"),
    ({"task": "summary"}, b"not audio at all", "default", 400, "invalid_file_format"),
    ({"task": "summary"}, None, None, 401, "missing_api_key"),
    ({"task": "summary"}, b"\0" * (5 * 1024 * 1024), "default", 413, "file_too_large"),
])
def test_analyze_errors(vox_app: ServeApp, data: dict[str, str], content: bytes | None, key: str | None,
                        status: int, code: str) -> None:
    assert_error(post(vox_app, "/v1/audio/analyze", data, content, key), status, code)


def test_hybrid_streams_transcript_then_analysis(vox_app: ServeApp) -> None:
    plain = post(vox_app, "/v1/audio/transcriptions", {"model": "whisper-1"}).json()["text"]
    response = post(vox_app, "/v1/audio/transcriptions/hybrid", {"model": "whisper-1", "task": "summary"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    assert [name for name, _ in events] == ["transcript", "analysis", "message"] and events[-1][1] == "[DONE]"
    transcript, analysis = events[0][1], events[1][1]
    assert transcript["type"] == "transcript.done" and transcript["text"] == plain  # unaffected by Voxtral
    assert analysis["type"] == "analysis.done" and analysis["model"] == "tiny-voxtral"
    assert analysis["timings"]["total_seconds"] >= transcript["seconds"]


def test_hybrid_voxtral_failure_keeps_the_transcript(vox_app: ServeApp) -> None:
    response = post(vox_app, "/v1/audio/transcriptions/hybrid", {"model": "whisper-1", "max_new_tokens": "900"})
    events = sse(response)
    assert events[0][1]["type"] == "transcript.done" and "country" in events[0][1]["text"].lower()
    failed = events[1][1]
    assert failed["type"] == "analysis.failed" and failed["error"]["code"] == "invalid_analysis_request"
    assert events[-1][1] == "[DONE]"


def test_hybrid_checks_like_transcriptions(vox_app: ServeApp) -> None:
    assert_error(post(vox_app, "/v1/audio/transcriptions/hybrid", {"model": "gpt-9"}), 404, "model_not_found")
    assert_error(post(vox_app, "/v1/audio/transcriptions/hybrid", {"model": "whisper-1"}, b"junk"), 400,
                 "invalid_file_format")


def test_unloadable_model_is_a_503_and_transcription_goes_on(vox_app: ServeApp,
                                                              serve_instance: ServeInstance) -> None:
    """The default model id can't be fetched offline: the app still deploys, analysis answers 503 naming the
    fix, transcription works."""
    app = deploy(serve_instance, voxtral_enabled=True, voxtral_cpus=0.5)
    error = assert_error(post(app, "/v1/audio/analyze", {"task": "summary"}), 503, "model_unavailable")
    assert "mistralai/Voxtral-Mini-3B-2507" in error["message"] and "RAYSCRIBE_VOXTRAL_MODEL" in error["message"]
    assert post(app, "/v1/audio/transcriptions", {"model": "whisper-1"}).status_code == 200


def test_disabled_voxtral_is_a_404() -> None:
    """The app built without Voxtral (the default): both routes answer 404 naming the setting, before any work.
    In-process ASGI: the check needs no model, so no second deployment is paid for."""
    from fastapi.testclient import TestClient

    from rayscribe.config.serve import load_serve_settings
    from rayscribe.config.settings import load_settings
    from serve.app import create_api
    from serve.service import TranscriptionService

    service = TranscriptionService(load_settings(), load_serve_settings(), model=None)
    with TestClient(create_api(service)) as client:
        for route in ("/v1/audio/analyze", "/v1/audio/transcriptions/hybrid"):
            response = client.post(route, data={"task": "summary"}, files={"file": ("jfk.mp3", JFK.read_bytes())})
            error = assert_error(response, 404, "voxtral_disabled")
            assert "RAYSCRIBE_VOXTRAL_ENABLED=true" in error["message"]
