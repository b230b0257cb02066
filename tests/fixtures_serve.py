"""Fixtures for the HTTP API tests: Ray Serve on the session cluster, listening on 127.0.0.1 and a free port.

Serve itself (controller and proxy, no CPUs reserved) starts once per session; each test module deploys the
app with the settings it needs and deletes it at the end, so the model replica's CPUs go back to the other
tests' actors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from jobs.harness.ports import free_port

TEST_KEY = "sk-test-rayscribe"
APP_NAME = "rayscribe-test"


@dataclass
class ServeInstance:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class ServeApp:
    """A deployed app: where it answers, its key, and the settings it runs with."""

    base_url: str
    api_key: str | None
    settings: Any
    serve_settings: Any

    def client(self, **kwargs: Any) -> Any:
        """The official ``openai`` client pointed at this app (no retries: tests want the first answer)."""
        from openai import OpenAI

        return OpenAI(base_url=f"{self.base_url}/v1", api_key=self.api_key or "unused", max_retries=0,
                      timeout=120, **kwargs)


def wait_for_health(base_url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``/health`` until a Whisper replica runs (the proxy may need a moment to learn the routes)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base_url}/health", timeout=10)
            last = response.text
            if response.status_code == 200 and response.json().get("worker_running"):
                return dict(response.json())
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)  # polling interval, not synchronisation
    raise AssertionError(f"the app did not become healthy in {timeout} s: {last}")


@pytest.fixture(scope="session")
def serve_instance(ray_connected: Any) -> Iterator[ServeInstance]:
    from ray import serve

    instance = ServeInstance("127.0.0.1", free_port())
    serve.start(http_options={"host": instance.host, "port": instance.port})
    yield instance
    serve.shutdown()


DeployFn = Callable[..., ServeApp]


def deploy(instance: ServeInstance, api_key: str | None = TEST_KEY, **overrides: Any) -> ServeApp:
    """Deploy (or redeploy) the test app with setting ``overrides``; returns once it answers."""
    from ray import serve

    from rayscribe.config.serve import ServeSettings, load_serve_settings
    from rayscribe.config.settings import Settings, load_settings
    from rayscribe.config.voxtral import VoxtralSettings, load_voxtral_settings
    from serve.app import build_app

    engine = {k: v for k, v in overrides.items() if k in Settings.model_fields}
    http = {k: v for k, v in overrides.items() if k in ServeSettings.model_fields}
    voxtral = {k: v for k, v in overrides.items() if k in VoxtralSettings.model_fields}
    settings = load_settings(**{"cpu_threads": 2, **engine})
    serve_settings = load_serve_settings(**{
        "serve_host": instance.host, "serve_port": instance.port, "api_keys": api_key,
        "cpus_per_replica": 0.5, "max_replicas": 1, "max_upload_mb": 4, **http,
    })
    serve.run(build_app(settings, serve_settings, load_voxtral_settings(**voxtral)), name=APP_NAME,
              route_prefix="/")
    wait_for_health(instance.base_url)
    return ServeApp(instance.base_url, api_key, settings, serve_settings)


@pytest.fixture(scope="module")
def serve_app(serve_instance: ServeInstance) -> Iterator[ServeApp]:
    """The app with the test key, a 4 MB upload limit and one model replica."""
    from ray import serve

    app = deploy(serve_instance)
    yield app
    serve.delete(APP_NAME)
