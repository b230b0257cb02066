"""The health contract every rayscribe container answers, defined once for Serve, the queue worker and a Ray node.

The predecessor's fields come first, with its meaning: ``status`` (``healthy``, ``degraded`` or ``unhealthy``),
``timestamp`` (ISO 8601, UTC), ``uptime`` (seconds), ``gpu_available``, ``worker_running``, ``container_id`` (the
host name, which Docker sets to the short container id). What this system adds follows: ``mode``, ``reasons`` (why
it is not healthy), the workers wanted and up, Voxtral's state, jobs done and failed and when the last one finished.

One rule decides the status (:func:`decide`), and one mapping gives the HTTP code (:func:`http_code`): 200 for
``healthy`` and ``degraded`` (it still does work, a load balancer keeps it), 503 for ``unhealthy``.
:class:`HealthServer` serves ``GET /health`` from a function on a standard-library HTTP server in a thread of the
process it reports on (the queue worker, a Ray node's entrypoint). No Ray here: callers hand in what they see.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

log = logging.getLogger("rayscribe.health")

Status = Literal["healthy", "degraded", "unhealthy"]
STATUSES: tuple[Status, ...] = ("healthy", "degraded", "unhealthy")
PREDECESSOR_FIELDS = ("status", "timestamp", "uptime", "gpu_available", "worker_running", "container_id")

# Voxtral's state: off (not enabled), ready, starting (loading), failed (enabled but not available: degraded).
VoxtralState = Literal["off", "ready", "starting", "failed"]


@dataclass
class Observation:
    """What a server sees of its process at one moment; :func:`decide` turns it into a status."""

    running: bool  # the serving loop / application is up (False: starting, stopped or crashed)
    workers_wanted: int  # Whisper workers or replicas it should have (0: scaled to zero, which is fine)
    workers_up: int  # of those, alive and answering
    voxtral: VoxtralState = "off"
    problems: list[str] = field(default_factory=list)  # other reasons for ``degraded`` (e.g. a deployment updating)
    worker_label: str = "Whisper worker"  # what the workers are, for the reasons (a Ray node's: its raylet)


def decide(seen: Observation) -> tuple[Status, list[str]]:
    """The status and why: ``unhealthy`` when nothing can do work (the loop or app is down, or every wanted
    worker is dead), ``degraded`` when it works at reduced capacity (some workers dead, Voxtral enabled but not
    available, or a reported problem), else ``healthy``."""
    if not seen.running:
        return "unhealthy", ["not running (starting, stopped or crashed)"]
    if seen.workers_wanted > 0 and seen.workers_up <= 0:
        return "unhealthy", [f"no {seen.worker_label} is up (0 of {seen.workers_wanted})"]
    reasons = list(seen.problems)
    if seen.workers_up < seen.workers_wanted:
        reasons.insert(0, f"{seen.workers_wanted - seen.workers_up} of {seen.workers_wanted} {seen.worker_label}(s) "
                          f"down")
    if seen.voxtral == "failed":
        reasons.append("Voxtral is enabled but not available")
    return ("degraded" if reasons else "healthy"), reasons


def http_code(status: str) -> int:
    """200 for a container that still does work (``healthy``, ``degraded``), 503 for one that does not."""
    return 200 if status in ("healthy", "degraded") else 503


def container_id() -> str:
    """The host name: Docker sets it to the container's short id (the predecessor's ``container_id``)."""
    return socket.gethostname()


def report(seen: Observation, *, mode: str, started: float, gpu_available: bool, worker_running: bool | None = None,
           **extra: Any) -> dict[str, Any]:
    """The health JSON: the predecessor's fields, then ``mode``, ``reasons``, the workers wanted and up, Voxtral's
    state and ``extra`` (e.g. ``jobs_done``, ``last_job_finished``, ``models``). ``started`` is a ``time.time()``;
    ``worker_running`` defaults to "running and, when workers are wanted, one is up"."""
    status, reasons = decide(seen)
    if worker_running is None:
        worker_running = seen.running and (seen.workers_up > 0 or seen.workers_wanted == 0)
    return {
        "status": status,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "uptime": round(max(0.0, time.time() - started), 3),
        "gpu_available": bool(gpu_available),
        "worker_running": bool(worker_running),
        "container_id": container_id(),
        "mode": mode,
        "reasons": reasons,
        "workers": {"wanted": seen.workers_wanted, "up": seen.workers_up},
        "voxtral": seen.voxtral,
        **extra,
    }


def iso_time(epoch: float | None) -> str | None:
    """A ``time.time()`` as ISO 8601 UTC (``last_job_finished``), or None."""
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def failure_report(mode: str, started: float, why: str) -> dict[str, Any]:
    """An ``unhealthy`` answer when building the real one failed: the endpoint answers whatever happens."""
    body = report(Observation(running=False, workers_wanted=0, workers_up=0), mode=mode, started=started,
                  gpu_available=False)
    body["reasons"] = [f"health check failed: {why}"]
    return body


class HealthServer:
    """``GET /health`` (and ``/``) on ``host:port``, answered with ``provider()``'s JSON and its status's HTTP code,
    on a daemon thread. ``port=0`` in the settings means off: the caller does not start one."""

    def __init__(self, provider: Callable[[], dict[str, Any]], port: int, host: str = "0.0.0.0",
                 mode: str = "worker") -> None:
        self.provider = provider
        self.mode = mode
        self.started = time.time()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="rayscribe-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def answer(self) -> dict[str, Any]:
        try:
            return self.provider()
        except Exception as exc:  # health must answer even when what it looks at is broken
            log.warning("health report failed: %s", exc)
            return failure_report(self.mode, self.started, f"{type(exc).__name__}: {exc}")

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health endpoint on http://%s:%d/health", self.server.server_address[0], self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(owner: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # probes every few seconds would flood the log
            pass

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/health", "/"):
                self._send(404, {"error": f"no route {self.path}; ask GET /health"})
                return
            body = owner.answer()
            self._send(http_code(str(body.get("status"))), body)

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

    return Handler
