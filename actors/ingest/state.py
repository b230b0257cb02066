"""What the ingest loop holds: the leases of the messages it has received, in every stage, and how it keeps them.

Every received message is held here from its receive until it is deleted, dead-lettered or released: in the inbox,
read ahead, in flight on a worker, waiting for its analysis, or finished and waiting to be written. The heartbeat
renews all of them; stopping releases them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from actors.pool import WhisperPool
from rayscribe.config.queue import QueueSettings
from rayscribe.config.settings import Settings
from rayscribe.queue.jobspec import JobSpec
from rayscribe.queue.policy import capacity, job_units, local_backoff, may_retry_locally
from rayscribe.queue.report import IngestReport
from rayscribe.queue.sqs import JobQueue, Message, QueueError
from rayscribe.scheduling import MAX_JOBS_PER_GROUP, is_short
from rayscribe.storage import Storage
from rayscribe.work import ItemResult, WorkItem

log = logging.getLogger("rayscribe.ingest")

LOOP_AWS_ATTEMPTS = 2  # botocore tries per call the loop makes: longer failures are retried by the loop itself


class PermanentJobError(Exception):
    """A job that cannot succeed however often it is retried."""


@dataclass(eq=False)
class Held:
    """A received message waiting to start (its lease is held and renewed), with its local retries and, once read
    ahead, its job and input."""

    message: Message
    received_at: float
    not_before: float = 0.0  # monotonic time before which it is not started (backoff after a transient failure)
    tries: int = 0  # transient failures retried here
    failing_since: float | None = None  # monotonic time of the first of them
    reruns: int = 0  # times its worker died under it
    spec: JobSpec | None = None  # set with ``item`` and ``payload`` once its input is read
    item: WorkItem | None = None
    payload: Any = None  # the input in Ray's object store
    size: int = 0  # bytes


@dataclass(eq=False)
class Job:
    """A job sent to the pool (alone, or packed with other short jobs in one worker call)."""

    held: Held
    spec: JobSpec
    started_at: float
    analysis_ref: Any = None  # the Voxtral worker's answer, when the job asks for ``analyze``
    analysis: dict[str, Any] | None = None  # set when no analysis can run (the record says why)
    split: bool = False  # sent to the pool's split coordinator

    @property
    def message(self) -> Message:
        return self.held.message

    @property
    def received_at(self) -> float:
        return self.held.received_at


@dataclass(eq=False)
class Unstored:
    """A finished transcript whose outputs are not written yet (just finished, or the writes failed); written at
    ``due``."""

    job: Job
    result: ItemResult
    tries: int
    due: float
    failing_since: float | None = None


class LoopState:
    """The loop's state and its leases: holding, renewing and releasing them."""

    def __init__(self, settings: Settings, queue_settings: QueueSettings, pool: WhisperPool) -> None:
        self.settings = settings
        self.qs = queue_settings
        self.pool = pool
        # The loop's own AWS calls give up sooner than botocore's default: it retries them itself, without
        # blocking (see _local_retry), and serves the other jobs meanwhile.
        fast = queue_settings.model_copy(update={"aws_max_attempts": min(LOOP_AWS_ATTEMPTS,
                                                                         queue_settings.aws_max_attempts)})
        self.queue = JobQueue(fast)
        self.storage = Storage(fast)
        self.report = IngestReport(workers=pool.size)
        self._lock = threading.Lock()
        self._inbox: deque[Held] = deque()
        self._ready: deque[Held] = deque()  # inputs read ahead, waiting for a free worker
        self._inflight: dict[Any, list[Job]] = {}  # the pool's call ref -> the jobs it carries
        self._analyses: dict[Any, tuple[Job, ItemResult]] = {}  # transcript stored, analysis awaited: ref -> job
        self._unstored: list[Unstored] = []  # transcripts waiting to be written (their leases still held)
        self._to_delete: list[Message] = []  # messages of jobs stored (or dead-lettered) this pass
        self._undeleted: list[tuple[Message, float]] = []  # deletes that failed, and since when: tried again
        self._next_delete = 0.0
        self._storage_down_until = 0.0  # after a transient S3 failure, other jobs wait for the next try
        self._starting = 0  # taken from the inbox, not yet in flight: still a held lease
        self._queues_dry = False  # the last receive found both queues empty
        self._stopping = threading.Event()
        self._release_now = threading.Event()
        self._wake = threading.Event()
        self._webhooks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rayscribe-webhook")
        self.packing = False  # short jobs share worker calls (set once the workers say their engine gains from it)
        self._typical: float | None = None  # audio seconds of the jobs read lately (recent mean), for unread ones
        self.capacity = self._capacity()

    @property
    def held(self) -> int:
        with self._lock:
            return (len(self._inbox) + len(self._ready) + sum(len(jobs) for jobs in self._inflight.values())
                    + len(self._analyses) + len(self._unstored) + self._starting)

    def _units(self, held: Held) -> float:
        """The share of a worker's place that a held job takes (see :func:`job_units`); one not read yet is taken
        to be as long as the jobs read lately."""
        duration = held.item.duration if held.item is not None else self._typical
        short = is_short(duration, self.settings.short_file_seconds)
        return job_units(duration, self.packing and short and held.reruns == 0, self.settings.group_seconds,
                         MAX_JOBS_PER_GROUP)

    def held_units(self) -> float:
        """Places the held messages take, transcripts waiting to be written aside (they hold no worker)."""
        with self._lock:
            entries = list(self._inbox) + list(self._ready) + [j.held for js in self._inflight.values() for j in js]
            others = len(self._analyses) + self._starting
        return sum(self._units(h) for h in entries) + others

    def _seen_duration(self, seconds: float | None) -> None:
        """A job's input was read: its length feeds the estimate for messages not read yet."""
        if seconds is not None:
            self._typical = seconds if self._typical is None else 0.8 * self._typical + 0.2 * seconds

    def _capacity(self) -> int:
        return capacity(self.pool.ready_workers(), self.settings.max_inflight_per_worker,
                        self.settings.prefetch_per_worker)

    def _local_retry(self, failing_since: float) -> bool:
        """Whether a job failing since then for a transient reason may still be retried here, under its lease."""
        return may_retry_locally(time.monotonic() - failing_since, self.qs.visibility_timeout,
                                 self.qs.heartbeat_seconds)

    def _storage_failed(self, tries: int) -> None:
        """S3 failed for a transient reason: other jobs wait for this one's next try instead of each spending a
        call (and the loop's time) on an endpoint that is likely down."""
        self._storage_down_until = max(self._storage_down_until, time.monotonic() + local_backoff(tries))

    def _heartbeat(self) -> None:
        """Renew every lease held, so no message comes back to another worker while this one has it."""
        with self._lock:
            held = [h.message for h in self._inbox] + [h.message for h in self._ready]
            held += [j.message for jobs in self._inflight.values() for j in jobs]
            held += [job.message for job, _ in self._analyses.values()] + [u.job.message for u in self._unstored]
        if not held:
            return
        try:
            lost = self.queue.extend(held, self.qs.visibility_timeout)
        except QueueError as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        for message in lost:
            log.warning("lost the lease of message %s; another worker may run it too (outputs are idempotent)",
                        message.message_id)

    def _release_inbox(self, why: str) -> None:
        with self._lock:
            pending = [h.message for h in self._inbox] + [h.message for h in self._ready]
            self._inbox.clear()
            self._ready.clear()
        self._release(pending, 0, why)

    def _release(self, messages: list[Message], delay: int, why: str) -> None:
        if not messages:
            return
        try:
            self.queue.release(messages, delay)
            self.report.released += len(messages)
            log.info("released %d lease(s) (%s)", len(messages), why)
        except QueueError as exc:
            log.warning("could not release %d lease(s): %s; they return after the visibility timeout",
                        len(messages), exc)
