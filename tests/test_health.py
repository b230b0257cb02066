"""The health contract (rayscribe/health.py) itself: the status rule, the JSON, its HTTP server, and a Ray node's
health (rayscribe/node_health.py) on real processes. The servers that use it are tested in test_worker_health.py
(the queue worker), test_serve_api.py (Serve) and test_docker.py (the image's check and ray mode)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

import pytest

from rayscribe.health import PREDECESSOR_FIELDS, HealthServer, Observation, decide, http_code, report
from rayscribe.node_health import NodeHealth, processes_named


@pytest.mark.parametrize(
    ("seen", "status", "reason"),
    [
        (Observation(running=True, workers_wanted=2, workers_up=2), "healthy", None),
        (Observation(running=True, workers_wanted=0, workers_up=0), "healthy", None),  # scaled to zero
        (Observation(running=True, workers_wanted=2, workers_up=1), "degraded", "1 of 2 Whisper worker(s) down"),
        (Observation(running=True, workers_wanted=1, workers_up=1, voxtral="failed"), "degraded",
         "Voxtral is enabled but not available"),
        (Observation(running=True, workers_wanted=1, workers_up=1, problems=["x is UNHEALTHY"]), "degraded",
         "x is UNHEALTHY"),
        (Observation(running=True, workers_wanted=2, workers_up=0), "unhealthy", "no Whisper worker is up (0 of 2)"),
        (Observation(running=False, workers_wanted=2, workers_up=2), "unhealthy", "not running"),
    ],
)
def test_the_status_rule(seen: Observation, status: str, reason: str | None) -> None:
    got, reasons = decide(seen)
    assert got == status
    assert (reasons == []) if reason is None else any(reason in r for r in reasons), reasons
    assert http_code(got) == (503 if status == "unhealthy" else 200)


def test_the_json_keeps_the_predecessors_fields_first() -> None:
    body = report(Observation(running=True, workers_wanted=1, workers_up=1), mode="worker", started=0.0,
                  gpu_available=False, jobs_done=3)
    assert tuple(body)[:6] == PREDECESSOR_FIELDS
    assert body["status"] == "healthy" and body["worker_running"] is True and body["uptime"] > 0
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None and body["container_id"]
    assert body["workers"] == {"wanted": 1, "up": 1} and body["jobs_done"] == 3 and body["voxtral"] == "off"


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_server_answers_with_the_status_code_and_survives_a_broken_provider() -> None:
    state: dict[str, Any] = {"up": 2}

    def provider() -> dict[str, Any]:
        if state["up"] < 0:
            raise RuntimeError("the pool is gone")
        return report(Observation(running=True, workers_wanted=2, workers_up=state["up"]), mode="worker",
                      started=0.0, gpu_available=False)

    with HealthServer(provider, 0, host="127.0.0.1") as server:
        url = f"http://127.0.0.1:{server.port}/health"
        assert _get(url)[0] == 200 and _get(url)[1]["status"] == "healthy"
        state["up"] = 1
        assert _get(url)[0] == 200 and _get(url)[1]["status"] == "degraded"
        state["up"] = 0
        code, body = _get(url)
        assert (code, body["status"]) == (503, "unhealthy")
        state["up"] = -1
        code, body = _get(url)
        assert (code, body["status"]) == (503, "unhealthy") and "the pool is gone" in body["reasons"][0]
        assert _get(f"http://127.0.0.1:{server.port}/nothing")[0] == 404


def test_a_ray_nodes_health_follows_its_main_process_and_daemon() -> None:
    """A node is healthy while its main process and its daemon (the raylet; ``sleep`` stands in) run."""
    main = subprocess.Popen(["sleep", "60"])
    daemon = subprocess.Popen(["sleep", "60"])
    try:
        health = NodeHealth(main.pid, daemon="sleep")
        body = health()
        assert body["status"] == "healthy" and body["mode"] == "ray", body
        assert daemon.pid in body["raylets"] and body["main_process"] == {"pid": main.pid, "running": True}
        main.kill()
        main.wait(timeout=10)
        body = health()
        assert body["status"] == "unhealthy" and body["main_process"]["running"] is False
        missing = NodeHealth(daemon.pid, daemon="no-such-daemon")()
        assert missing["status"] == "unhealthy" and missing["reasons"] == ["no no-such-daemon is up (0 of 1)"]
        assert processes_named("no-such-daemon") == []
    finally:
        for proc in (main, daemon):
            proc.kill()
            proc.wait(timeout=10)
