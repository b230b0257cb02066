"""What travels between the driver and the Whisper workers: work items in, item results out.

Plain dataclasses, so the core, the Ray actors, the queue and the HTTP paths share one vocabulary.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from rayscribe.errors import RayscribeError
from rayscribe.transcript import Transcript


@dataclass
class WorkItem:
    """One audio file to transcribe. ``key`` is unique within a run; ``source`` says where the bytes live."""

    key: str
    name: str
    source: str
    duration: float | None = None
    attempts: int = 0


@dataclass
class ItemResult:
    """The outcome for one work item: a transcript, or an error with its reason."""

    key: str
    name: str
    transcript: Transcript | None = None
    error: str | None = None
    error_type: str | None = None
    audio_seconds: float = 0.0
    processing_seconds: float = 0.0
    attempts: int = 1
    worker: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.transcript is not None

    @property
    def real_time_factor(self) -> float:
        """Audio seconds per processing second (higher is faster)."""
        return self.audio_seconds / self.processing_seconds if self.processing_seconds > 0 else 0.0

    def metrics(self) -> dict[str, Any]:
        """The lightweight per-file metrics kept beside the transcript: with the file's language, how sure the
        detection was, and the model that transcribed it (several models: engines/routing.py)."""
        return {
            "file": self.name,
            "audio_seconds": round(self.audio_seconds, 3),
            "processing_seconds": round(self.processing_seconds, 3),
            "real_time_factor": round(self.real_time_factor, 2),
            "attempts": self.attempts,
            **{k: v for k, v in self.worker.items() if k in ("model", "backend", "device", "compute_type",
                                                             "node_id", "pid", "pieces", "workers_used")},
            **self.language_fields(),
        }

    def language_fields(self) -> dict[str, Any]:
        """``language``, ``language_probability`` and ``model`` (the one that did it) of the transcript."""
        if self.transcript is None:
            return {}
        fields: dict[str, Any] = {"language": self.transcript.language,
                                  "language_probability": round(self.transcript.language_probability, 4)}
        if self.transcript.model:
            fields["model"] = self.transcript.model
        return fields


def failure_message(exc: BaseException) -> str:
    """Expected errors keep their message; others keep their type, message and where they were raised."""
    if isinstance(exc, RayscribeError):
        return str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return f"internal error {type(exc).__name__}: {exc}{where}"


def failure(item: WorkItem, exc: BaseException, worker: dict[str, Any] | None = None) -> ItemResult:
    """An ItemResult for ``exc``: expected errors keep their message; others keep their type and message."""
    message = failure_message(exc)
    return ItemResult(key=item.key, name=item.name, error=message, error_type=type(exc).__name__,
                      attempts=item.attempts, worker=worker or {})
