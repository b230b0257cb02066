"""Which files go to a worker together, and which worker gets work next: the pool's decisions, without Ray.

Short files are packed into groups so one worker call transcribes them in shared model batches (the batch path plans
every group up front; the queue path packs the jobs it has read ahead). Work goes to the worker expected to be free
soonest: least audio left, not fewest calls, or a short file would queue behind a long one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rayscribe.work import WorkItem

MIN_GROUP_SECONDS = 30.0  # one model window: a smaller group gains nothing from packing
MAX_JOBS_PER_GROUP = 16  # queue jobs packed into one worker call at most (a lost worker reruns them all)


def group_target(total_seconds: float, workers: int, group_seconds: float, calls_per_worker: int = 2) -> float:
    """Audio per group: at most ``group_seconds``, smaller when fewer groups would leave workers idle
    (``calls_per_worker`` groups per worker), never under one model window."""
    return min(group_seconds, max(MIN_GROUP_SECONDS, total_seconds / max(1, calls_per_worker * workers)))


def is_short(duration: float | None, short_file_seconds: float) -> bool:
    """Known to be short enough to share a worker call with others."""
    return duration is not None and duration <= short_file_seconds


def plan_groups(items: list[WorkItem], short_file_seconds: float, group_seconds: float,
                workers: int) -> list[list[WorkItem]]:
    """Pack short files into groups (at most :func:`group_target` of audio each); long files or files of unknown
    length go alone. Longest groups first."""
    short = [i for i in items if is_short(i.duration, short_file_seconds)]
    alone = [[i] for i in items if not is_short(i.duration, short_file_seconds)]
    target = group_target(sum(i.duration or 0.0 for i in short), workers, group_seconds)
    groups: list[list[WorkItem]] = []
    current: list[WorkItem] = []
    size = 0.0
    for item in short:
        if current and size + (item.duration or 0.0) > target:
            groups.append(current)
            current, size = [], 0.0
        current.append(item)
        size += item.duration or 0.0
    if current:
        groups.append(current)
    everything = alone + groups
    everything.sort(key=lambda g: -sum(i.duration or 0.0 for i in g))
    return everything


def pack_next(first: WorkItem, candidates: Sequence[WorkItem], target: float,
              max_items: int = MAX_JOBS_PER_GROUP) -> list[int]:
    """Indexes of ``candidates`` (in order) to send with ``first``: short ones with other keys, while the group's
    audio stays within ``target``. A key appears once per group (a worker call returns results by key)."""
    size = first.duration or 0.0
    keys = {first.key}
    chosen: list[int] = []
    for index, item in enumerate(candidates):
        if len(chosen) + 1 >= max_items:
            break
        duration = item.duration or 0.0
        if item.key in keys or size + duration > target:
            continue
        chosen.append(index)
        keys.add(item.key)
        size += duration
    return chosen


@dataclass
class WorkerLoad:
    """What one worker holds: its calls in flight, the audio they carry and when the oldest was sent."""

    inflight: int
    audio_seconds: float = 0.0
    oldest_sent: float | None = None


def soonest_free(loads: Sequence[WorkerLoad], speed: float | None, now: float) -> int:
    """Index of the worker expected to be free soonest: least audio left to transcribe (the audio it holds less what
    it has done since the oldest call was sent, at the speed calls have shown), then fewest calls."""

    def left(load: WorkerLoad) -> tuple[float, int]:
        done = (speed or 0.0) * (now - load.oldest_sent) if load.oldest_sent is not None else 0.0
        return max(0.0, load.audio_seconds - done), load.inflight

    return min(range(len(loads)), key=lambda i: left(loads[i]))
