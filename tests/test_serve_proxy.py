"""``RAYSCRIBE_SERVE_PROXY=haproxy``: ``rayscribe serve`` as a user runs it (a real process with its own
embedded cluster), HAProxy in front and gRPC between the deployments (Serve's throughput mode), the official
``openai`` client (plain and streamed), and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from rayscribe.audio import decode_audio
from rayscribe.config.settings import load_settings
from rayscribe.engines import TranscribeOptions
from serve.proxy import HAPROXY_SWITCH, THROUGHPUT_SWITCH, haproxy_environment
from tests.conftest import free_port
from tests.fixtures_serve import TEST_KEY, wait_for_health
from tests.speech import REPO, require_speech

RAYSCRIBE = str(Path(sys.executable).parent / "rayscribe")


def test_the_haproxy_environment_keeps_ports_already_set_and_picks_free_ones_otherwise() -> None:
    picked = haproxy_environment({})
    assert picked[HAPROXY_SWITCH] == "1" and picked[THROUGHPUT_SWITCH] == "1"
    ports = {int(picked[name]) for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                                            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")}
    assert len(ports) == 4 and ports.isdisjoint({8404, 9101, 8500, 9500})  # Ray's fixed defaults would collide
    assert picked["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "2"  # Ray's 30 s would hold up Ctrl-C
    kept = haproxy_environment({"RAY_SERVE_HAPROXY_STATS_PORT": "18404", HAPROXY_SWITCH: "0", THROUGHPUT_SWITCH: "0"})
    assert kept["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404" and kept[HAPROXY_SWITCH] == "1"
    assert kept[THROUGHPUT_SWITCH] == "0"  # HAProxy alone, when asked for


def _listener(port: int) -> psutil.Process | None:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


@pytest.fixture(scope="module")
def haproxy_server() -> Any:
    """``rayscribe serve`` on an embedded cluster with HAProxy in front, stopped with Ctrl-C (SIGINT)."""
    port = free_port()
    env = {**os.environ, "RAYSCRIBE_SERVE_PROXY": "haproxy", "RAYSCRIBE_API_KEYS": TEST_KEY,
           "RAYSCRIBE_SERVE_PORT": str(port), "RAYSCRIBE_CPU_THREADS": "2", "RAYSCRIBE_MAX_REPLICAS": "1",
           "RAYSCRIBE_RAY_ADDRESS": ""}
    for name in (HAPROXY_SWITCH, THROUGHPUT_SWITCH, "RAY_ADDRESS"):
        env.pop(name, None)
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"rayscribe-serve-haproxy-{port}.log", "w+")  # noqa: SIM115
    # Started with SIGINT ignored, as a background job of a script (or of this suite run so) inherits it:
    # `rayscribe serve` installs its own handler, so Ctrl-C still stops it.
    proc = subprocess.Popen([RAYSCRIBE, "serve"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base_url, timeout=240)
        yield proc, port, base_url, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _log(log: Any) -> str:
    log.flush()
    log.seek(0)
    return str(log.read())[-3000:]


def test_haproxy_fronts_the_api_and_answers_as_the_direct_engine(haproxy_server: Any, fw_engine: Any) -> None:
    from openai import AuthenticationError, OpenAI

    _, port, base_url, log = haproxy_server
    listener = _listener(port)
    assert listener is not None and "haproxy" in listener.name(), _log(log)  # not Serve's Python proxy
    # The start-up line says what fronts the API; it comes just after the app answers, so poll for it.
    deadline = time.monotonic() + 30
    while "HAProxy, gRPC between deployments" not in _log(log) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling interval
    assert "HAProxy, gRPC between deployments" in _log(log), _log(log)
    jfk = require_speech() / "jfk" / "jfk.wav"
    client = OpenAI(base_url=f"{base_url}/v1", api_key=TEST_KEY, max_retries=0, timeout=120)
    with jfk.open("rb") as fh:
        result = client.audio.transcriptions.create(model="whisper-1", file=fh)
    expected = fw_engine.transcribe(decode_audio(jfk), TranscribeOptions.from_settings(load_settings()))
    assert result.text == expected.text
    with jfk.open("rb") as fh:  # streamed segments come from the model deployment over Serve's gRPC transport
        events = list(client.audio.transcriptions.create(model="whisper-1", file=fh, stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert deltas and "".join(d.delta for d in deltas) == events[-1].text == expected.text
    with pytest.raises(AuthenticationError) as denied, jfk.open("rb") as fh:
        OpenAI(base_url=f"{base_url}/v1", api_key="sk-wrong", max_retries=0).audio.transcriptions.create(
            model="whisper-1", file=fh)
    assert denied.value.status_code == 401
    assert denied.value.code == "invalid_api_key"
    timing = httpx.post(f"{base_url}/v1/audio/transcriptions", timeout=120,
                        headers={"Authorization": f"Bearer {TEST_KEY}"},
                        files={"file": ("jfk.wav", jfk.read_bytes(), "audio/wav")}, data={"model": "whisper-1"})
    assert timing.status_code == 200 and "engine;dur=" in timing.headers["server-timing"]


def test_ctrl_c_stops_the_server_and_its_haproxy(haproxy_server: Any) -> None:
    proc, port, _, log = haproxy_server
    listener = _listener(port)
    assert listener is not None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0, _log(log)  # about 7 s on an idle 2-core machine, 30+ s with Ray's drain
    deadline = time.monotonic() + 30
    while listener.is_running() and listener.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.2)  # polling interval
    assert not listener.is_running() or listener.status() == psutil.STATUS_ZOMBIE, "HAProxy outlived the server"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
