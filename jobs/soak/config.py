"""The soak's settings, the messages it sends and the faults it plans."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIP_SECONDS = (4.0, 6.0, 8.0, 10.0, 12.0)  # good jobs cycle through these: 8 s on average
FORMATS = ("txt", "srt", "vtt", "json")
HIGH_PRIORITY_EVERY = 10  # every tenth good job goes to the high-priority queue
MAX_RECEIVE_COUNT = 5  # a job hit by two injected faults still completes (production default: 3)
POLL = 0.3  # seconds between the driver's looks at the queues


@dataclass
class SoakConfig:
    jobs: int = 500
    workers: int = 16
    spares: int = 8  # warm standby workers (RAYSCRIBE_SPARE_WORKERS): a killed worker's place is taken at once
    inflight: int = 2  # jobs each worker holds (RAYSCRIBE_MAX_INFLIGHT_PER_WORKER)
    prefetch: int = 3  # inputs read ahead per worker (RAYSCRIBE_PREFETCH_PER_WORKER): 12 s of work at 4 s a job
    probe: float = 5.0  # a worker silent this long is taken for lost (RAYSCRIBE_WORKER_PROBE_SECONDS)
    nodes: int = 3
    speed: float = 2.0
    actor_kills: int = 10
    node_kill: bool = True
    outage_seconds: float = 12.0
    malformed: int = 20
    corrupt: int = 20
    backlog: int = 0  # visible messages the feeder keeps waiting; 0: workers x 2
    visibility: int = 60  # SQS lease in seconds; the heartbeat renews it every sixth of that
    seed: int = 7
    timeout: float = 0.0  # 0: 4 x the ideal time + 180 s
    json_path: Path = Path("bench-results/soak.json")
    keep: bool = False
    verbose: bool = False


@dataclass
class Entry:
    """One message the feeder sends, and what the checker expects of it."""

    kind: str  # good | corrupt | malformed
    body: str
    queue: str = "normal"
    job_id: str | None = None  # set where the message names a valid job id and output path
    audio_seconds: float = 0.0
    sent: bool = False
    sends: int = 0  # send requests that carried it: one whose answer was cut off may still have arrived


@dataclass
class Fault:
    at: float  # fraction of the messages sent when it fires
    kind: str  # actor_kill | node_kill | outage
    fired_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
