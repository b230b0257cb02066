"""Where a queue job's files live and how its outcome is recorded; Ray-free, shared by the worker and ``status``.

For a job whose output base is ``B`` (see :func:`rayscribe.queue.jobspec.output_base`):

- ``B.txt``, ``B.srt``... the transcript in each format;
- ``B.metrics.json``  job id, audio and processing seconds, real-time factor, model, device, worker, timestamps;
- ``B.done.json``     the completion marker, written last (conditional put) — its presence means "finished";
- ``B.error.json``    the error record of a job that failed permanently (reason, type, attempt, worker);
- ``B.analysis.json`` Voxtral's answer for a job with ``analyze`` (the metrics say ``analysis.status``: done, or
  failed with the reason; a failed analysis never fails the job or loses its transcript).

Outputs are written before the metrics and the marker, so a job with a marker always has complete outputs, and
a redelivered job that finds the marker is not transcribed again.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rayscribe.formatters import EXTENSIONS, format_transcript
from rayscribe.queue.jobspec import JobSpec, output_base
from rayscribe.storage import Storage, StorageError
from rayscribe.work import ItemResult

CONTENT_TYPES = {"txt": "text/plain; charset=utf-8", "srt": "application/x-subrip; charset=utf-8",
                 "vtt": "text/vtt; charset=utf-8", "json": "application/json", "verbose_json": "application/json"}


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class JobPaths:
    """The locations of one job's files."""

    base: str

    @classmethod
    def for_job(cls, spec: JobSpec) -> JobPaths:
        return cls(output_base(spec.s3_output_path, spec.job_id))

    def output(self, fmt: str) -> str:
        return f"{self.base}{EXTENSIONS[fmt]}"

    @property
    def metrics(self) -> str:
        return f"{self.base}.metrics.json"

    @property
    def done(self) -> str:
        return f"{self.base}.done.json"

    @property
    def error(self) -> str:
        return f"{self.base}.error.json"

    @property
    def analysis(self) -> str:
        return f"{self.base}.analysis.json"


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def job_metrics(spec: JobSpec, result: ItemResult, *, received_at: float, started_at: float,
                attempt: int, outputs: list[str], analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    """The per-job metrics kept beside the transcript (with the analysis's outcome when one was asked for)."""
    finished = time.time()
    worker = result.worker
    extra = {} if analysis is None else {"analysis": analysis}
    return {
        "job_id": spec.job_id,
        "input": spec.s3_input_path,
        "outputs": outputs,
        "audio_seconds": round(result.audio_seconds, 3),
        "processing_seconds": round(result.processing_seconds, 3),
        "real_time_factor": round(result.real_time_factor, 2),
        "wall_seconds": round(finished - received_at, 3),
        "language": result.transcript.language if result.transcript else None,
        "language_probability": result.language_fields().get("language_probability"),
        "model": result.language_fields().get("model", worker.get("model")),
        "backend": worker.get("backend"),
        "device": worker.get("device"),
        "compute_type": worker.get("compute_type"),
        "worker": {"node_id": worker.get("node_id"), "pid": worker.get("pid"), "gpu_ids": worker.get("gpu_ids", [])},
        "pieces": worker.get("pieces", 1),  # > 1: a long file split across workers
        "workers_used": worker.get("workers_used", 1),
        "attempt": attempt,
        "priority": spec.priority,
        "received_at": now_iso(received_at),
        "started_at": now_iso(started_at),
        "finished_at": now_iso(finished),
        **extra,
    }


def store_outputs(storage: Storage, spec: JobSpec, result: ItemResult, formats: list[str],
                  extra: list[tuple[str, str, str]] | None = None) -> list[str]:
    """Write the transcript in every format (rendered all first: a formatting error writes nothing), and the
    ``extra`` files with them, all at once."""
    assert result.transcript is not None
    paths = JobPaths.for_job(spec)
    files = [(paths.output(fmt), format_transcript(result.transcript, fmt,
                                                   metadata={"job_id": spec.job_id, **result.metrics()}),
              CONTENT_TYPES[fmt]) for fmt in formats]
    storage.write_all(files + (extra or []))
    return [paths.output(f) for f in formats]


def store_analysis(storage: Storage, paths: JobPaths, analysis: dict[str, Any]) -> str:
    """Write a job's analysis (Voxtral's answer) beside its transcript; returns where."""
    storage.write_text(paths.analysis, _dumps(analysis), content_type="application/json")
    return paths.analysis


def store_success(storage: Storage, spec: JobSpec, result: ItemResult, formats: list[str],
                  *, received_at: float, started_at: float, attempt: int,
                  analysis: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """Write every output and the metrics (at once), then the done marker. Returns the metrics and whether this call
    wrote the marker (False: another consumer finished the same job first; the outputs are the same)."""
    paths = JobPaths.for_job(spec)
    metrics = job_metrics(spec, result, received_at=received_at, started_at=started_at, attempt=attempt,
                          outputs=[paths.output(f) for f in formats], analysis=analysis)
    store_outputs(storage, spec, result, formats, [(paths.metrics, _dumps(metrics), "application/json")])
    marker = {"job_id": spec.job_id, "status": "done", "finished_at": metrics["finished_at"],
              "metrics": paths.metrics, "outputs": metrics["outputs"]}
    wrote = storage.write_text(paths.done, _dumps(marker), content_type="application/json", if_absent=True)
    return metrics, wrote


def error_record(reason: str, error_type: str, *, job_id: str | None, attempt: int,
                 worker: dict[str, Any] | None = None, message_id: str | None = None) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "status": "failed",
        "reason": reason,
        "type": error_type,
        "attempt": attempt,
        "worker": {k: (worker or {}).get(k) for k in ("node_id", "pid", "model", "device")},
        "message_id": message_id,
        "failed_at": now_iso(),
    }


def store_error(storage: Storage, base: str, record: dict[str, Any]) -> None:
    storage.write_text(f"{base}.error.json", _dumps(record), content_type="application/json")


def is_done(storage: Storage, spec: JobSpec, *, s3: Any = None) -> bool:
    """Whether the job's done marker is there. ``s3``: a client to use instead of this thread's own."""
    return storage.exists(JobPaths.for_job(spec).done, s3=s3)


def job_status(storage: Storage, base: str) -> dict[str, Any]:
    """What is known about the job whose files live at ``base``: done (with metrics), failed (with the error
    record) or not finished (queued or running)."""
    try:
        if storage.exists(f"{base}.done.json"):
            metrics: dict[str, Any] = {}
            with contextlib.suppress(StorageError, ValueError):
                metrics = json.loads(storage.read_text(f"{base}.metrics.json"))
            return {"status": "done", "metrics": metrics}
        if storage.exists(f"{base}.error.json"):
            return {"status": "failed", "error": json.loads(storage.read_text(f"{base}.error.json"))}
    except ValueError as exc:
        return {"status": "unknown", "reason": f"unreadable record at {base}: {exc}"}
    return {"status": "pending", "reason": "no outputs yet: queued, running, or waiting for a retry"}
