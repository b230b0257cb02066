"""HTTP fuzzing of the deployed app from its OpenAPI schema (schemathesis), on 127.0.0.1: no 5xx, every error
in OpenAI's shape, and the service still transcribes a real clip afterwards.

Marked ``fuzz`` (deselect with ``-m "not fuzz"``); it runs in the default suite and in CI. The seed is fixed so a
failure replays; ``python -m jobs.fuzz_serve --seed N`` explores other seeds by hand.
"""

from __future__ import annotations

import httpx
import pytest

from jobs.fuzz_serve import DEFAULT_SEED, error_shape_problem, fuzz, require_loopback
from tests.fixtures_serve import ServeApp
from tests.speech import SAMPLES

CLIP = SAMPLES / "sense_and_sensibility_01_austen_64kb-0870.wav"
REQUESTS = 1000
BUDGET_S = 170.0

pytestmark = pytest.mark.fuzz


def test_fuzz_the_api_from_its_schema(serve_app: ServeApp) -> None:
    report = fuzz(serve_app.base_url, serve_app.api_key, target_requests=REQUESTS, budget_s=BUDGET_S,
                  seed=DEFAULT_SEED)
    summary = report.to_dict()
    print({k: summary[k] for k in ("requests", "seconds", "statuses", "error_codes", "kinds")})

    assert report.requests >= REQUESTS, f"only {report.requests} requests in {BUDGET_S} s: {summary}"
    assert report.server_errors == 0, summary["findings"]
    assert not report.findings, summary["findings"]
    # It reached past validation: the decoder refused some uploads and transcribed others.
    assert report.error_codes["400 invalid_file_format"] > 0 and report.kinds["mutated audio"]["200"] > 0

    # Still healthy, and a valid request gets a real transcript.
    response = httpx.post(f"{serve_app.base_url}/v1/audio/transcriptions",
                          headers={"Authorization": f"Bearer {serve_app.api_key}"},
                          files={"file": (CLIP.name, CLIP.read_bytes(), "audio/wav")}, data={"model": "whisper-1"},
                          timeout=120)
    assert response.status_code == 200, response.text
    assert "dashwood" in response.json()["text"].lower()


def test_fuzzer_checks() -> None:
    """The fuzzer's own rules: loopback only, and what counts as OpenAI's error shape."""
    for url in ("http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:8000"):
        require_loopback(url)
    for url in ("http://10.0.0.1:8000", "http://example.com", "http://0.0.0.0:8000"):
        with pytest.raises(SystemExit, match="only loopback"):
            require_loopback(url)
    good = b'{"error": {"message": "no", "type": "invalid_request_error", "param": null, "code": null}}'
    assert error_shape_problem(400, "application/json", good) is None
    assert error_shape_problem(400, "text/plain", b"Internal Server Error")
    assert error_shape_problem(422, "application/json", b'{"detail": [{"loc": ["body"]}]}')
    assert error_shape_problem(400, "application/json", b'{"error": {"message": "x"}}')
