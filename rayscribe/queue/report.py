"""What a run of the queue worker did: one outcome per handled message, and the summary printed and returned."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobOutcome:
    """One handled message, for the summary."""

    job_id: str
    status: str  # done | failed | retry | requeued | duplicate
    reason: str = ""
    audio_seconds: float = 0.0
    processing_seconds: float = 0.0
    at: float = field(default_factory=time.time, repr=False)  # when it was handled (the health's last job)


@dataclass
class IngestReport:
    """What a run of the loop did."""

    outcomes: list[JobOutcome] = field(default_factory=list)
    wall_seconds: float = 0.0
    released: int = 0
    engine: dict[str, Any] = field(default_factory=dict)
    workers: int = 0
    stop_reason: str = ""

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def audio_seconds(self) -> float:
        return sum(o.audio_seconds for o in self.outcomes if o.status == "done")

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.count("done"), "failed": self.count("failed"), "retried": self.count("retry"),
            "requeued": self.count("requeued"), "duplicates": self.count("duplicate"), "released": self.released,
            "audio_seconds": round(self.audio_seconds, 3), "wall_seconds": round(self.wall_seconds, 3),
            "real_time_factor": round(self.audio_seconds / self.wall_seconds, 2) if self.wall_seconds else 0.0,
            "workers": self.workers, "engine": self.engine, "stop_reason": self.stop_reason,
            "jobs": [{k: v for k, v in o.__dict__.items() if k != "at"} for o in self.outcomes],
        }
