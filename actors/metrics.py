"""rayscribe's Prometheus metrics through Ray (``ray.util.metrics``), exported by every node's metrics agent.

Ray prefixes the names with ``ray_`` on export and counters get ``_total``: ``rayscribe_jobs_done`` is scraped
as ``ray_rayscribe_jobs_done_total``. Recording never raises: metrics must not fail a job.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any

log = logging.getLogger("rayscribe.metrics")

NAMES = (
    "rayscribe_jobs_done", "rayscribe_jobs_failed", "rayscribe_audio_seconds", "rayscribe_real_time_factor",
    "rayscribe_queue_messages", "rayscribe_gpus_desired", "rayscribe_gpus_actual",
)


@lru_cache(maxsize=1)
def _metrics() -> dict[str, Any]:
    from ray.util.metrics import Counter, Gauge

    return {
        "jobs_done": Counter("rayscribe_jobs_done", "Jobs (files) transcribed.", tag_keys=("path",)),
        "jobs_failed": Counter("rayscribe_jobs_failed", "Jobs (files) that failed for good.",
                               tag_keys=("path", "error_type")),
        "audio_seconds": Counter("rayscribe_audio_seconds", "Seconds of audio transcribed.", tag_keys=("path",)),
        "real_time_factor": Gauge("rayscribe_real_time_factor",
                                  "Audio seconds per processing second of the latest job.", tag_keys=("path",)),
        "queue_messages": Gauge("rayscribe_queue_messages", "Approximate messages in a job queue.",
                                tag_keys=("queue", "state")),
        "gpus_desired": Gauge("rayscribe_gpus_desired", "GPUs the autoscaling policy asks for."),
        "gpus_actual": Gauge("rayscribe_gpus_actual", "GPUs the Ray cluster has."),
    }


def _record(what: str, method: str, value: float, tags: dict[str, str] | None = None) -> None:
    try:
        getattr(_metrics()[what], method)(value, tags=tags)
    except Exception as exc:  # no Ray session, or the metrics agent is down: never fail the job for it
        log.debug("metric %s not recorded: %s", what, exc)


# Ray exports a gauge only in the report after it was set, so a gauge set once per job would show for one
# scrape and vanish; the latest real-time factor is set again by ``refresh_gauges`` from the ingest loop.
_latest_rtf: dict[str, float] = {}
_refreshed = 0.0
REFRESH_SECONDS = 1.0


def job_done(path: str, audio_seconds: float, processing_seconds: float) -> None:
    """A finished job of the ``batch`` or ``queue`` path."""
    _record("jobs_done", "inc", 1.0, {"path": path})
    if audio_seconds > 0:
        _record("audio_seconds", "inc", audio_seconds, {"path": path})
        if processing_seconds > 0:
            _latest_rtf[path] = audio_seconds / processing_seconds
            _record("real_time_factor", "set", _latest_rtf[path], {"path": path})


def refresh_gauges() -> None:
    """Set the per-job gauges again (at most once a second), so they stay visible between jobs."""
    global _refreshed
    now = time.monotonic()
    if now - _refreshed < REFRESH_SECONDS:
        return
    _refreshed = now
    for path, value in _latest_rtf.items():
        _record("real_time_factor", "set", value, {"path": path})


def job_failed(path: str, error_type: str) -> None:
    _record("jobs_failed", "inc", 1.0, {"path": path, "error_type": error_type or "Error"})


def queue_messages(queue: str, visible: int, inflight: int) -> None:
    """``queue`` is ``main``, ``high`` or ``dlq``."""
    _record("queue_messages", "set", float(visible), {"queue": queue, "state": "visible"})
    _record("queue_messages", "set", float(inflight), {"queue": queue, "state": "inflight"})


def gpus(desired: float, actual: float) -> None:
    _record("gpus_desired", "set", float(desired))
    _record("gpus_actual", "set", float(actual))
