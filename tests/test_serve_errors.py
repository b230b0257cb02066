"""Every error answer has OpenAI's shape and the right status; overload sheds load with 503 and recovers."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.fixtures_serve import APP_NAME, TEST_KEY, ServeApp, ServeInstance, deploy
from tests.speech import SAMPLES

CLIP = SAMPLES / "sense_and_sensibility_01_austen_64kb-0870.wav"


@pytest.fixture(scope="module")
def strict_app(serve_instance: ServeInstance) -> Iterator[ServeApp]:
    """One request at a time in the model, one queued, a 1 MB upload limit: easy to overload."""
    from ray import serve

    app = deploy(serve_instance, max_upload_mb=1, max_ongoing_requests=1, max_queued_requests=1,
                 max_batch_size=1, retry_after_s=2)
    yield app
    serve.delete(APP_NAME)


def _post(app: ServeApp, *, key: str | None = TEST_KEY, data: dict[str, Any] | None = None,
          files: dict[str, Any] | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if files is None:
        files = {"file": (CLIP.name, CLIP.read_bytes(), "audio/wav")}
    return httpx.post(f"{app.base_url}/v1/audio/transcriptions", headers=headers, files=files,
                      data={"model": "whisper-1", **(data or {})}, timeout=120)


def _error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert list(body["error"]) == ["message", "type", "param", "code"]
    assert body["error"]["message"] and "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code
    return dict(body["error"])


def test_missing_key(strict_app: ServeApp) -> None:
    error = _error(_post(strict_app, key=None), 401, "missing_api_key")
    assert error["type"] == "invalid_request_error"


def test_bad_key_through_openai(strict_app: ServeApp) -> None:
    client = openai.OpenAI(base_url=f"{strict_app.base_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info, CLIP.open("rb") as fh:
        client.audio.transcriptions.create(model="whisper-1", file=fh)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"


def test_models_need_the_key_but_health_does_not(strict_app: ServeApp) -> None:
    _error(httpx.get(f"{strict_app.base_url}/v1/models", timeout=30), 401, "missing_api_key")
    assert httpx.get(f"{strict_app.base_url}/health", timeout=30).status_code == 200


def test_oversize_upload(strict_app: ServeApp) -> None:
    big = b"\0" * (2 * 1024 * 1024)
    error = _error(_post(strict_app, files={"file": ("big.wav", big, "audio/wav")}), 413, "file_too_large")
    assert error["param"] == "file"


def test_non_audio_upload(strict_app: ServeApp) -> None:
    text = b"this is not audio, just a text file\n" * 50
    error = _error(_post(strict_app, files={"file": ("notes.txt", text, "text/plain")}), 400,
                   "invalid_file_format")
    assert error["param"] == "file"


def test_empty_upload(strict_app: ServeApp) -> None:
    _error(_post(strict_app, files={"file": ("empty.wav", b"", "audio/wav")}), 400, "empty_file")


def test_missing_file(strict_app: ServeApp) -> None:
    response = httpx.post(f"{strict_app.base_url}/v1/audio/transcriptions",
                          headers={"Authorization": f"Bearer {TEST_KEY}"}, data={"model": "whisper-1"}, timeout=30)
    assert _error(response, 400, "missing_required_parameter")["param"] == "file"


def test_unknown_model_through_openai(strict_app: ServeApp) -> None:
    with pytest.raises(openai.NotFoundError) as info, CLIP.open("rb") as fh:
        strict_app.client().audio.transcriptions.create(model="whisper-9", file=fh)
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("field", "value"),
    [("response_format", "docx"), ("temperature", "2"), ("temperature", "hot"), ("language", "klingon"),
     ("timestamp_granularities[]", "sentence")],
)
def test_bad_fields(strict_app: ServeApp, field: str, value: str) -> None:
    assert _error(_post(strict_app, data={field: value}), 400)["param"] == field


def test_unknown_route(strict_app: ServeApp) -> None:
    response = httpx.get(f"{strict_app.base_url}/v1/nothing-here",
                         headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=30)
    _error(response, 404, "not_found")


def test_overload_answers_503_then_recovers(strict_app: ServeApp) -> None:
    payload = CLIP.read_bytes()

    def one(_: int) -> httpx.Response:
        return _post(strict_app, files={"file": (CLIP.name, payload, "audio/wav")})

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses, statuses
    assert set(statuses) <= {200, 503}
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["Retry-After"] == "2"
    assert _error(rejected, 503, "overloaded")["type"] == "server_error"
    after = _post(strict_app)
    assert after.status_code == 200 and "dashwood" in after.json()["text"].lower()
