"""Serve's ``GET /health`` through the app's routes (in-process ASGI), fed the deployment states Serve's controller
would report: healthy with every Whisper replica running, degraded while one is down or Voxtral has none, 503
unhealthy with none. The live app's answer is checked in test_serve_api.py; no Ray here, so each state is exact."""

from __future__ import annotations

from typing import Any

import pytest

from rayscribe.config.serve import load_serve_settings
from rayscribe.config.settings import load_settings


class _Model:
    """A stand-in for the Whisper deployment's handle: ``info.remote()`` is awaitable."""

    class _Info:
        @staticmethod
        async def remote() -> dict[str, Any]:
            return {"backend": "faster-whisper", "model": "tiny.en", "device": "cpu", "compute_type": "int8"}

    info = _Info()


def _states(whisper_running: int, whisper_wanted: int, voxtral: int | None = None) -> dict[str, dict[str, Any]]:
    states = {"TranscriptionAPI": {"running": 1, "wanted": 1, "status": "HEALTHY", "message": ""},
              "WhisperDeployment": {"running": whisper_running, "wanted": whisper_wanted,
                                    "status": "HEALTHY" if whisper_running == whisper_wanted else "UPDATING",
                                    "message": ""}}
    if voxtral is not None:
        states["VoxtralDeployment"] = {"running": voxtral, "wanted": 1, "status": "UNHEALTHY" if not voxtral else
                                       "HEALTHY", "message": "the replica failed to start" if not voxtral else ""}
    return states


@pytest.mark.parametrize(
    ("states", "voxtral_on", "code", "status", "reason"),
    [
        (_states(2, 2), False, 200, "healthy", None),
        (_states(0, 0), False, 200, "healthy", None),  # scaled to zero (RAYSCRIBE_MIN_REPLICAS=0)
        (_states(1, 2), False, 200, "degraded", "1 of 2 Whisper worker(s) down"),  # one replica died
        (_states(1, 1, voxtral=0), True, 200, "degraded", "Voxtral is enabled but not available"),
        (_states(0, 1), False, 503, "unhealthy", "no Whisper worker is up (0 of 1)"),
        ({}, False, 503, "unhealthy", "no Whisper worker is up"),  # Serve's controller did not answer
    ],
)
def test_serve_health_statuses(monkeypatch: pytest.MonkeyPatch, states: dict[str, Any], voxtral_on: bool,
                               code: int, status: str, reason: str | None) -> None:
    from fastapi.testclient import TestClient

    import serve.service
    from serve.app import create_api
    from serve.service import TranscriptionService

    monkeypatch.setattr(serve.service, "_deployment_states", lambda: states)
    service = TranscriptionService(load_settings(), load_serve_settings(), model=_Model())
    service.voxtral = object() if voxtral_on else None
    with TestClient(create_api(service)) as client:
        response = client.get("/health")
    body = response.json()
    assert (response.status_code, body["status"]) == (code, status), body
    assert tuple(body)[:6] == ("status", "timestamp", "uptime", "gpu_available", "worker_running", "container_id")
    assert body["mode"] == "serve" and body["voxtral"] == ("failed" if voxtral_on else "off")
    assert (body["reasons"] == []) if reason is None else any(reason in r for r in body["reasons"]), body
    running = states.get("WhisperDeployment", {}).get("running", 0)
    assert body["worker_running"] is (running > 0) and body["replicas"]["whisper"] == running


def test_serve_health_counts_audio_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audio requests answered count as jobs done (2xx) or failed (5xx); a client's 4xx is neither."""
    import serve.service
    from serve.service import TranscriptionService

    monkeypatch.setattr(serve.service, "_deployment_states", lambda: _states(1, 1))
    service = TranscriptionService(load_settings(), load_serve_settings(), model=_Model())
    for route, status in [("/v1/audio/transcriptions", 200), ("/v1/audio/transcriptions", 400),
                          ("/v1/audio/analyze", 503), ("/v1/models", 200)]:
        service.record_request(route, status, 0.1)
    import asyncio

    body = asyncio.run(service.health()).model_dump()
    assert (body["jobs_done"], body["jobs_failed"]) == (1, 1) and body["last_job_finished"]
