"""The queue worker's decisions, without Ray or AWS: how long to back off, which failures are for good, which job
starts next, how many messages to hold, and what a Voxtral request asks for.

The ingest loop (``actors/ingest``) carries these out; keeping them here gives each a unit test of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rayscribe.engines.voxtral_engine import AnalyzeOptions

LOCAL_BACKOFF_MAX = 1.0  # seconds; from 0.5 s up to this (a probe of a failing endpoint costs little)
WORKER_DEATH_RERUNS = 1  # a job whose worker died runs again here this often per receive, then goes back to SQS
# A worker's answer that no retry can change.
PERMANENT_RESULT_ERRORS = frozenset({"AudioDecodeError", "LanguageNotSupportedError"})


def local_backoff(tries: int) -> float:
    """Seconds to wait before the ``tries``-th local retry of a transient failure."""
    return min(LOCAL_BACKOFF_MAX, 0.5 * 2.0 ** max(0, tries - 1))


def may_retry_locally(failing_for: float, visibility_timeout: float, heartbeat_seconds: float) -> bool:
    """Whether a job failing for ``failing_for`` seconds for a transient reason may still be retried under its
    lease: for half the time a lease renewed at most a heartbeat ago is sure to last."""
    return failing_for < max(0.0, (visibility_timeout - heartbeat_seconds) / 2)


def is_permanent(error_type: str | None) -> bool:
    """A failed transcription that would fail again however often it is retried (the audio cannot be decoded)."""
    return error_type in PERMANENT_RESULT_ERRORS


def input_error_type(missing: bool) -> str:
    """The error type of an input that cannot be read for good: not there, or not ours to read."""
    return "MissingInput" if missing else "InputDenied"


def analyze_options(analyze: bool | str) -> AnalyzeOptions:
    """A job's ``analyze`` field: ``true`` asks for a summary, a string is a question about the audio."""
    if isinstance(analyze, str) and analyze.strip():
        return AnalyzeOptions(task="question", prompt=analyze.strip())
    return AnalyzeOptions(task="summary")


@dataclass
class ReadyJob:
    """What the choice of the next job looks at: its priority and length (None when unknown)."""

    priority: str
    duration: float | None


def next_ready(jobs: Sequence[ReadyJob], queues_dry: bool) -> int:
    """Index of the read-ahead job to start next. While the queues have work: the first (the order received; a job
    put back after its worker died is first). Once they run dry, the last jobs of a batch: high priority first, then
    the longest (unknown counts as longest), so the workers finish together instead of waiting on a long job started
    last."""
    if not queues_dry:
        return 0
    return max(range(len(jobs)), key=lambda i: (jobs[i].priority == "high", jobs[i].duration or math.inf))


def job_units(duration: float | None, packed: bool, group_seconds: float, max_per_group: int) -> float:
    """How much of a worker's place a held job takes: one call, or, for a short job that is packed with others,
    its share of a group (at least one ``max_per_group``-th), so the loop holds enough short jobs to pack them."""
    if not packed or duration is None:
        return 1.0
    return min(1.0, max(1.0 / max_per_group, duration / group_seconds))


def capacity(ready_workers: int, inflight_per_worker: int, prefetch_per_worker: int) -> int:
    """Places worth holding messages for: a few per worker that is up (a replacement still starting gets none yet),
    in flight and read ahead."""
    return ready_workers * (inflight_per_worker + prefetch_per_worker)
