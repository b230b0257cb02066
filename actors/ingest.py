"""The ingest actor: SQS job messages in, Whisper pool in the middle, transcripts and metrics out to S3.

One loop owns every lease. A receiver thread long-polls (high-priority queue first, then the main queue) and
never asks for more messages than the pool has places for (workers x (in flight + read ahead) per worker). The
loop reads the next jobs' inputs ahead into Ray's object store while the workers are busy, starts each job on the
worker expected to be free soonest, extends every held lease on a heartbeat, and for each finished job writes
outputs, metrics and the done marker (on the passes after, once the workers are fed) before deleting the message.

Failures: a permanent one (invalid message, missing input, undecodable audio, wrong model) writes the job's error
record beside its would-be output and moves the message to the dead-letter queue with the reason in its attributes.
Failures that are not the job's keep its lease and are retried here, without a round trip through SQS: a job whose
worker died runs again at once on another worker (once per receive), an input that cannot be read for a transient
reason (e.g. the endpoint is briefly unreachable) is read again after a short backoff, and a finished transcript
whose outputs cannot be written yet is kept and written again, so an outage costs its own length rather than the
visibility timeout and a second transcription, and the read-ahead keeps the workers going meanwhile. Anything
else gives the lease back after ``retry_delay_seconds``
and leaves the rest to SQS's redrive policy. Every job is handled inside its own ``try``, so a poison message can
neither block the queue nor kill the loop.

Stopping: :meth:`IngestLoop.request_stop` stops receiving; jobs in flight finish (or, with ``release=True``, their
leases are released at once with visibility 0) and messages not yet started are released immediately.

:class:`IngestLoop` is a plain class, run by ``rayscribe worker`` in the driver (where signals arrive);
:class:`IngestActor` wraps it for running inside a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import ray
from ray.exceptions import RayActorError

from actors.metrics import job_done as record_job_done
from actors.metrics import job_failed as record_job_failed
from actors.metrics import refresh_gauges as refresh_metric_gauges
from actors.pool import WhisperPool, _Slot
from actors.split import should_split
from rayscribe.audio import probe_duration
from rayscribe.config.queue import QueueSettings
from rayscribe.config.settings import Settings
from rayscribe.engines import TranscribeOptions
from rayscribe.engines.voxtral_engine import AnalyzeOptions
from rayscribe.queue.jobspec import JobSpec, JobSpecError, output_base, parse_job, salvage
from rayscribe.queue.jobstore import (
    JobPaths,
    error_record,
    is_done,
    store_analysis,
    store_error,
    store_outputs,
    store_success,
)
from rayscribe.queue.sqs import JobQueue, Message, QueueError
from rayscribe.queue.webhook import post_json
from rayscribe.storage import Storage, StorageError, io_threads, is_s3
from rayscribe.work import ItemResult, WorkItem

log = logging.getLogger("rayscribe.ingest")
T = TypeVar("T")

PERMANENT_RESULT_ERRORS = frozenset({"AudioDecodeError"})
WAIT_STEP = 0.5  # longest the loop blocks on Ray before looking at its inbox, heartbeats and stop flags
ARRIVAL_CHECK = 0.05  # while waiting on Ray, how often the loop looks for messages just received
FOLLOW_SECONDS = 1.0  # how often the loop asks the autoscaling policy how many workers it wants
RECEIVE_BACKOFF_MAX = 1.0  # longest pause between failed receives: an endpoint that comes back is used soon
LOCAL_BACKOFF_MAX = 1.0  # seconds; from 0.5 s up to this (a probe of a failing endpoint costs little)
LOOP_AWS_ATTEMPTS = 2  # botocore tries per call the loop makes: longer failures are retried by the loop (below)
PREFETCH_PER_PASS = 4  # inputs read ahead per pass of the loop, so reading never holds up finished jobs for long
STORE_SECONDS_PER_PASS = 0.25  # writing finished transcripts stops for a pass after this, so workers get fed
WORKER_DEATH_RERUNS = 1  # a job whose worker died runs again here this often per receive, then goes back to SQS


def local_backoff(tries: int) -> float:
    """Seconds to wait before the ``tries``-th local retry of a transient failure."""
    return min(LOCAL_BACKOFF_MAX, 0.5 * 2.0 ** max(0, tries - 1))


def analyze_options(analyze: bool | str) -> AnalyzeOptions:
    """A job's ``analyze`` field: ``true`` asks for a summary, a string is a question about the audio."""
    if isinstance(analyze, str) and analyze.strip():
        return AnalyzeOptions(task="question", prompt=analyze.strip())
    return AnalyzeOptions(task="summary")


class PermanentJobError(Exception):
    """A job that cannot succeed however often it is retried."""


@dataclass
class _Held:
    """A received message waiting in the inbox (its lease is held and renewed), with its local retries and, once
    read ahead, its job and input."""

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


@dataclass
class _Unstored:
    """A finished transcript whose outputs are not written yet (just finished, or the writes failed); written at
    ``due``."""

    job: _Job
    result: ItemResult
    tries: int
    due: float
    failing_since: float | None = None


@dataclass
class _Job:
    held: _Held
    spec: JobSpec
    started_at: float
    slot: _Slot
    ref: Any = None
    analysis_ref: Any = None  # the Voxtral worker's answer, when the job asks for ``analyze``
    analysis: dict[str, Any] | None = None  # set when no analysis can run (the record says why)
    handle: Any = None  # the worker the job was sent to (the slot may hold a replacement by the time it ends)
    split: bool = False  # sent to the pool's split coordinator

    @property
    def message(self) -> Message:
        return self.held.message

    @property
    def received_at(self) -> float:
        return self.held.received_at


@dataclass
class JobOutcome:
    """One handled message, for the summary."""

    job_id: str
    status: str  # done | failed | retry | requeued | duplicate
    reason: str = ""
    audio_seconds: float = 0.0
    processing_seconds: float = 0.0


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
            "jobs": [o.__dict__ for o in self.outcomes],
        }


class IngestLoop:
    """Polls the queues and runs their jobs on ``pool`` (started) until stopped or, with ``drain``, until both
    queues are empty and nothing is in flight."""

    def __init__(self, settings: Settings, queue_settings: QueueSettings, pool: WhisperPool, *,
                 drain: bool = False, analyzer: Any = None, analyzer_error: str | None = None,
                 autoscaler: Any = None) -> None:
        self.analyzer = analyzer  # a VoxtralWorker handle for jobs with ``analyze``, or None
        self.analyzer_error = analyzer_error or "audio understanding is off on this worker"
        # jobs whose transcript is stored, waiting for their analysis: analysis ref -> (job, transcript result)
        self._analyses: dict[Any, tuple[_Job, ItemResult]] = {}
        self.settings = settings
        self.qs = queue_settings
        self.pool = pool
        self.drain = drain
        # The loop's own AWS calls give up sooner than botocore's default: it retries them itself, without
        # blocking (see _local_retry), and serves the other jobs meanwhile.
        fast = queue_settings.model_copy(update={"aws_max_attempts": min(LOOP_AWS_ATTEMPTS,
                                                                         queue_settings.aws_max_attempts)})
        self.queue = JobQueue(fast)
        self.storage = Storage(fast)
        # Transient failures are retried here while the lease is safe: it was renewed at most a heartbeat ago.
        self.local_retry_seconds = max(0.0, (queue_settings.visibility_timeout - queue_settings.heartbeat_seconds) / 2)
        self._storage_down_until = 0.0  # after a transient S3 failure, other jobs wait for the next try
        self.capacity = self._capacity()
        self.report = IngestReport(workers=pool.size)
        self._lock = threading.Lock()
        self._inbox: deque[_Held] = deque()
        self._ready: deque[_Held] = deque()  # inputs read ahead, waiting for a free worker
        self._inflight: dict[Any, _Job] = {}
        self._unstored: list[_Unstored] = []  # transcripts waiting to be written (their leases still held)
        self._to_delete: list[Message] = []  # messages of jobs stored (or dead-lettered) this pass
        self._undeleted: list[tuple[Message, float]] = []  # deletes that failed, and since when: tried again
        self._next_delete = 0.0
        self._stopping = threading.Event()
        self.receiving = threading.Event()  # set once the first receive call has returned: the loop takes work
        self._release_now = threading.Event()
        self._wake = threading.Event()
        self._arrived = threading.Event()  # the receiver brought messages since the loop's pass began
        self._idle_polls = 0
        self._queues_dry = False  # the last receive found both queues empty
        self._speed: float | None = None  # audio seconds per second a worker has shown (mean of recent jobs)
        self._starting = 0  # popped from the inbox, not yet in flight: still a held lease
        self._fatal: str | None = None
        self._webhooks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rayscribe-webhook")
        self._model = pool.slots[0].info.get("model") if pool.slots else settings.model
        # The queue-driven policy (actors/autoscaler.py), asked between jobs how many workers to run.
        self.autoscaler = autoscaler
        self._target_ref: Any = None
        self._next_follow = 0.0
        self._worker_infos: dict[Any, tuple[_Slot, Any]] = {}  # replacements starting: info ref -> slot, handle
        self._probes: dict[Any, tuple[_Slot, Any, float]] = {}  # liveness probes out: ref -> slot, handle, sent at
        self._next_probe = 0.0

    # -- control --------------------------------------------------------------------------------------

    def request_stop(self, release: bool = False) -> None:
        """Stop receiving; finish jobs in flight, or with ``release`` give their leases back at once."""
        if release and not self._release_now.is_set():
            log.info("stopping now: no new receives; releasing every lease now")
        elif self.report.stop_reason and not self._stopping.is_set():
            log.info("stopping: %s", self.report.stop_reason)
        elif not release and not self._stopping.is_set():
            log.info("stopping: no new receives; jobs in flight finish first (stop again to release them at once)")
        if release:
            self._release_now.set()
        self._stopping.set()
        self._wake.set()

    @property
    def held(self) -> int:
        with self._lock:
            return (len(self._inbox) + len(self._ready) + len(self._inflight) + len(self._analyses)
                    + len(self._unstored) + self._starting)

    def _ready_workers(self) -> int:
        return sum(1 for s in self.pool.slots if s.ready)

    def _capacity(self) -> int:
        """Messages worth holding: a few per worker that is up (a replacement still starting gets none yet), in
        flight and read ahead."""
        return self._ready_workers() * (self.settings.max_inflight_per_worker + self.settings.prefetch_per_worker)

    def _busy(self) -> bool:
        """Jobs this loop still has to finish before it may stop."""
        return bool(self._inflight or self._analyses or self._unstored)

    # -- receiving (own thread) -------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        wait = min(self.qs.wait_seconds, 1) if self.drain else self.qs.wait_seconds
        failures = 0
        while not self._stopping.is_set():
            with self._lock:  # transcripts waiting to be written hold a lease but no worker
                unstored = len(self._unstored)
            room = min(self.capacity - (self.held - unstored), self.qs.receive_batch)
            if room <= 0:
                self._wake.wait(WAIT_STEP)
                self._wake.clear()
                continue
            try:
                messages = self.queue.receive("high", room, 0)
                if not messages:
                    messages = self.queue.receive("normal", room, wait)
                failures = 0
                self.receiving.set()
            except QueueError as exc:
                if exc.missing:
                    self._fatal = str(exc)
                    self.request_stop()
                    return
                failures += 1
                log.warning("receiving failed (%s); trying again", exc)
                self._stopping.wait(min(RECEIVE_BACKOFF_MAX, 0.5 * 2.0 ** (failures - 1)))
                continue
            if self._stopping.is_set():
                self._release(messages, 0, "stopping")
                return
            now = time.time()
            with self._lock:
                self._inbox.extend(_Held(m, now) for m in messages)
                self._queues_dry = not messages
                if not messages:
                    self._idle_polls += 1
            if messages:  # the loop may be waiting on Ray: new work for a free worker should not wait for a job
                self._arrived.set()
                self._wake.set()

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self) -> IngestReport:
        started = time.perf_counter()
        if self.pool.slots:
            info = self.pool.slots[0].info
            self.report.engine = {k: info.get(k) for k in ("backend", "model", "device", "compute_type")}
        self.queue.url("high"), self.queue.url("normal"), self.queue.url("dlq")  # fail early on a missing queue
        self.storage.warm()  # this thread's S3 client made now, not on the first job's clock
        receiver = threading.Thread(target=self._receive_loop, name="rayscribe-receiver", daemon=True)
        receiver.start()
        last_beat = time.monotonic()
        checked_polls = 0
        try:
            while True:
                self._arrived.clear()
                if self._release_now.is_set():
                    break
                if self._stopping.is_set():
                    self._release_inbox("stopping")
                    if not self._busy():
                        break
                if self.autoscaler is not None:
                    self._follow_autoscaler()
                self._collect_worker_infos()
                self._probe_workers()
                self.pool.keep_spares()
                self.capacity = self._capacity()
                self._start_jobs()  # feeding the workers comes first, then reading ahead, then late writes
                self._prefetch()
                self._store_finished()
                self._delete_finished()
                refresh_metric_gauges()
                if time.monotonic() - last_beat >= self.qs.heartbeat_seconds:
                    self._heartbeat()
                    last_beat = time.monotonic()
                if self._inflight or self._analyses:
                    refs = list(self._inflight) + list(self._analyses)
                    writes_due = any(u.due <= time.monotonic() for u in self._unstored)  # then look, don't wait
                    ready = self._wait_for_jobs(refs, 0 if writes_due else WAIT_STEP)
                    if ready:  # every job done by now frees its worker before the next pass starts jobs
                        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                    for ref in ready:
                        if ref in self._analyses:
                            self._finish_analysis(ref)
                            continue
                        with self._lock:
                            job = self._inflight[ref]
                        self._finish(job)
                        with self._lock:
                            del self._inflight[ref]
                    if ready:
                        self._wake.set()
                else:
                    self._wake.wait(0.05 if self._inbox or self._ready or self._unstored else WAIT_STEP)
                    self._wake.clear()  # or an event already seen would spin this loop
                if self.drain and not self._stopping.is_set() and self.held == 0 and self._idle_polls > checked_polls:
                    checked_polls = self._idle_polls
                    if self._queues_empty():
                        self.report.stop_reason = "drained: both queues are empty"
                        self.request_stop()
        finally:
            self._stopping.set()
            self._next_delete = 0.0  # one last try for deletes that failed
            self._delete_finished()
            if self._release_now.is_set():
                self._release_inbox("stopping now")
                jobs = list(self._inflight.values()) + [job for job, _ in self._analyses.values()]
                jobs += [u.job for u in self._unstored]
                self._inflight.clear()
                self._analyses.clear()
                self._unstored.clear()
                self._release([j.message for j in jobs], 0, "stopping now")
            receiver.join(timeout=self.qs.wait_seconds + 15)
            self._release_inbox("stopping")
            self._webhooks.shutdown(wait=True)
            self.report.wall_seconds = time.perf_counter() - started
        if self._fatal:
            raise QueueError(self._fatal, missing=True)
        if not self.report.stop_reason:
            self.report.stop_reason = "stopped now; leases released" if self._release_now.is_set() else "stopped"
        return self.report

    def _wait_for_jobs(self, refs: list[Any], timeout: float) -> list[Any]:
        """Wait up to ``timeout`` for the first of ``refs``, cut short when the receiver brings messages: they may
        go to a free worker, or be read ahead, now rather than when a job ends."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready, _ = ray.wait(refs, num_returns=1, timeout=max(0.0, min(ARRIVAL_CHECK, left)))
            if ready or left <= ARRIVAL_CHECK or self._arrived.is_set():
                return list(ready)

    def _follow_autoscaler(self) -> None:
        """Resize the pool to the policy's wish (never waits: the answer is picked up on a later pass)."""
        if self.pool.poll_started():
            info = self.pool.slots[0].info
            self.report.engine = self.report.engine or {k: info.get(k) for k in ("backend", "model", "device",
                                                                                 "compute_type")}
            log.info("pool grew to %d ready worker(s)", len(self.pool.slots))
        if self._target_ref is None and time.monotonic() >= self._next_follow:
            self._target_ref = self.autoscaler.desired_workers.remote()
        elif self._target_ref is not None and ray.wait([self._target_ref], timeout=0)[0]:
            try:
                target = ray.get(self._target_ref)
            except Exception as exc:
                log.warning("cannot reach the autoscaling policy: %s", exc)
                target = None
            self._target_ref, self._next_follow = None, time.monotonic() + FOLLOW_SECONDS
            if target is not None and not self._stopping.is_set():
                change = self.pool.resize(int(target))
                if change:
                    log.info("pool resized by %+d to %d worker(s) (%d ready) as the autoscaling policy asks",
                             change, self.pool.size, len(self.pool.slots))
        self.report.workers = max(self.report.workers, self.pool.size)

    def _queues_empty(self) -> bool:
        try:
            return all(sum(self.queue.counts(q).values()) == 0 for q in ("high", "normal"))
        except QueueError as exc:
            log.warning("cannot read queue depth: %s", exc)
            return False

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

    def _heartbeat(self) -> None:
        with self._lock:
            held = [h.message for h in self._inbox] + [h.message for h in self._ready]
            held += [j.message for j in self._inflight.values()]
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

    # -- starting a job ---------------------------------------------------------------------------------

    def _free_slot(self) -> _Slot | None:
        """The worker with room that should be free soonest: least audio left to transcribe (its jobs' lengths
        less what it has done since the first was sent, at the speed jobs have shown), then fewest jobs. Counting
        jobs alone would queue a short file behind a long one while another worker is about to finish."""
        # Once the queues run dry, the last jobs go only to idle workers: queued behind a busy worker's job, one
        # would keep the whole batch waiting while other workers stand idle.
        limit = 1 if self._queues_dry else self.settings.max_inflight_per_worker
        slots = [s for s in self.pool.slots if s.ready and s.inflight < limit]
        if len(slots) < 2:
            return slots[0] if slots else None
        now = time.time()
        left: dict[int, float] = {}
        sent: dict[int, float] = {}
        with self._lock:
            jobs = list(self._inflight.values())
        for job in jobs:
            if job.handle is job.slot.handle and not job.split:
                key = id(job.slot)
                left[key] = left.get(key, 0.0) + ((job.held.item.duration or 0.0) if job.held.item else 0.0)
                sent[key] = min(sent.get(key, now), job.started_at)
        speed = self._speed or 0.0
        return min(slots, key=lambda s: (max(0.0, left.get(id(s), 0.0) - speed * (now - sent.get(id(s), now))),
                                         s.inflight))

    def _next_due(self, read_ahead: bool = True) -> _Held | None:
        """The next entry that may start now: one read ahead, else the first inbox entry that is not backing off
        after a transient failure (none while S3 is failing, unless its input is in hand)."""
        now = time.monotonic()
        with self._lock:
            if read_ahead and self._ready:
                self._starting += 1
                if not self._queues_dry:
                    return self._ready.popleft()
                # The last jobs of a batch: high priority, then longest first, so the workers finish together
                # (a long job started last would keep the batch waiting while the others stand idle).
                last = max(self._ready, key=lambda h: (h.spec is not None and h.spec.priority == "high",
                                                       h.item.duration or math.inf if h.item else math.inf))
                self._ready.remove(last)
                return last
            for held in self._inbox:
                if held.payload is None and now < self._storage_down_until:
                    continue
                if held.not_before <= now:
                    self._inbox.remove(held)
                    self._starting += 1
                    return held
        return None

    def _prefetch(self) -> None:
        """Read the inputs of the next jobs while the workers are busy (up to ``prefetch_per_worker`` per worker
        and ``prefetch_max_mb``), so a worker that frees up starts at once and the workers keep going while S3 is
        briefly unreachable."""
        limit = self._ready_workers() * self.settings.prefetch_per_worker
        budget = self.settings.prefetch_max_mb * 1024 * 1024
        for _ in range(PREFETCH_PER_PASS):
            with self._lock:
                if len(self._ready) >= limit or sum(h.size for h in self._ready) >= budget:
                    return
            if self._stopping.is_set():
                return
            held = self._next_due(read_ahead=False)
            if held is None:
                return
            self._step(held, "reading", self._prepare, lambda entry, _: self._ready.append(entry))

    def _start_jobs(self) -> None:
        while not self._stopping.is_set():
            slot = self._free_slot()
            if slot is None:
                return
            held = self._next_due()
            if held is None:
                return
            self._step(held, "starting", partial(self._start, slot=slot),
                       lambda _, job: self._inflight.__setitem__(job.ref, job))

    def _step(self, held: _Held, what: str, step: Callable[[_Held], T | None],
              keep: Callable[[_Held, T], Any]) -> None:
        """Run ``step`` on an entry taken from the inbox (counted in ``_starting`` until then); a result is kept
        with ``keep`` under the lock, so the entry is always counted as held. One message never stops the loop."""
        result: T | None = None
        try:
            result = step(held)
        except Exception as exc:
            log.exception("internal error %s message %s", what, held.message.message_id)
            self._retry(held.message, None, f"internal error {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._starting -= 1
                if result:
                    keep(held, result)

    def _requeue(self, held: _Held, spec: JobSpec | None, reason: str, *, worker_died: bool = False) -> None:
        """Run the job again here, keeping its lease: at once on another worker after a worker death (once per
        receive: a job that kills workers goes back to SQS), after a backoff for a transient failure. When its
        local tries are spent, SQS retries it (:meth:`_retry`)."""
        job_id = spec.job_id if spec else salvage(held.message.body).get("job_id") or held.message.message_id
        if worker_died:
            held.reruns += 1
            if held.reruns > WORKER_DEATH_RERUNS:
                self._retry(held.message, spec, reason)
                return
            held.not_before = 0.0
        else:
            held.tries += 1
            held.failing_since = held.failing_since or time.monotonic()
            if not self._local_retry(held.failing_since):
                self._retry(held.message, spec, f"{reason} ({held.tries} tries here)")
                return
            held.not_before = time.monotonic() + local_backoff(held.tries)
            self._storage_failed(held.tries)
        with self._lock:
            (self._ready if held.payload is not None else self._inbox).appendleft(held)
        self.report.outcomes.append(JobOutcome(job_id, "requeued", reason=reason))
        log.warning("job %s: %s; %s", job_id, reason, "running it again on another worker" if worker_died else
                    f"trying again in {local_backoff(held.tries):.1f} s (local try {held.tries})")
        self._wake.set()

    def _local_retry(self, failing_since: float) -> bool:
        """Whether a job failing since then for a transient reason may still be retried here, under its lease."""
        return time.monotonic() - failing_since < self.local_retry_seconds

    def _storage_failed(self, tries: int) -> None:
        """S3 failed for a transient reason: other jobs wait for this one's next try instead of each spending a
        call (and the loop's time) on an endpoint that is likely down."""
        self._storage_down_until = max(self._storage_down_until, time.monotonic() + local_backoff(tries))

    def _prepare(self, held: _Held) -> bool:
        """Parse the message and read its input into Ray's object store (once; a job run again keeps it). False
        when the message was dealt with instead: failed, found done, or put back to be read again later."""
        if held.payload is not None:
            return True
        message = held.message
        try:
            spec = parse_job(message.body)
        except JobSpecError as exc:
            self._fail_permanently(message, None, str(exc), "InvalidMessage")
            return False
        local = [p for p in (spec.s3_input_path, spec.s3_output_path) if not is_s3(p)]
        if local and not self.qs.allow_local_paths:
            self._fail_permanently(message, None, f"the job names local path(s) {', '.join(local)}; queue jobs read "
                                   f"and write s3:// URLs only (set RAYSCRIBE_ALLOW_LOCAL_PATHS=true on a trusted "
                                   f"single machine to allow them)", "LocalPathRefused", write_record=False)
            return False
        try:
            if spec.model and spec.model not in (self._model, self.settings.model):
                raise PermanentJobError(f"the job asks for model {spec.model!r} but this worker serves "
                                        f"{self._model!r}; send it to a worker started with RAYSCRIBE_MODEL="
                                        f"{spec.model}")
            # beside the read, on a shared thread with this thread's client: one round trip, not two
            done = io_threads().submit(is_done, self.storage, spec, s3=self.storage.s3)
            try:
                data, unread = self.storage.read_bytes(spec.s3_input_path), None
            except StorageError as exc:
                data, unread = b"", exc
            if done.result():  # deleted at the end of the pass with the finished jobs' (_delete_finished)
                self._to_delete.append(message)
                self.report.outcomes.append(JobOutcome(spec.job_id, "duplicate"))
                log.info("job already done: %s (redelivered message deleted, not transcribed again)", spec.job_id)
                return False
            if unread is not None:
                raise unread
        except PermanentJobError as exc:
            self._fail_permanently(message, spec, str(exc), "WrongModel")
            return False
        except StorageError as exc:
            if exc.permanent:
                self._fail_permanently(message, spec, str(exc), "MissingInput" if exc.missing else "InputDenied")
            else:
                self._requeue(held, spec, f"cannot read the input: {exc}")
            return False
        held.spec, held.size, held.payload = spec, len(data), ray.put(data)
        held.item = WorkItem(key=spec.job_id, name=spec.s3_input_path, source=spec.s3_input_path,
                             duration=probe_duration(data), attempts=message.receive_count)
        return True

    def _start(self, held: _Held, slot: _Slot) -> _Job | None:
        if not self._prepare(held):
            return None
        spec, item, payload = held.spec, held.item, held.payload
        assert spec is not None and item is not None
        options = (TranscribeOptions.from_settings(self.settings).with_(language=spec.language)
                   if spec.language else None)
        analysis_ref = None
        analysis: dict[str, Any] | None = None
        if spec.analyze:
            if self.analyzer is None:
                log.warning("job %s asks for analysis, which this worker cannot run (%s); transcribing only",
                            spec.job_id, self.analyzer_error)
                analysis = {"status": "failed", "error": self.analyzer_error, "error_type": "AnalyzerUnavailable"}
            else:  # Voxtral starts on the same audio now, beside Whisper
                analysis_ref = self.analyzer.analyze.remote(payload, analyze_options(spec.analyze), spec.job_id)
        split = should_split(item, self.settings, len(self.pool.slots))
        if split:  # a long file: pieces on every worker at once
            ref = self.pool.split(item, payload, options)
        else:
            ref = slot.handle.transcribe.remote([item], [payload], options)
        slot.inflight += 1
        log.info("job started: %s (%s, %.0f KB, attempt %d, %s priority)", spec.job_id, spec.s3_input_path,
                 held.size / 1024, held.message.receive_count, spec.priority)
        return _Job(held=held, spec=spec, started_at=time.time(), slot=slot, ref=ref, analysis_ref=analysis_ref,
                    analysis=analysis, handle=slot.handle, split=split)

    # -- finishing a job --------------------------------------------------------------------------------

    def _finish(self, job: _Job) -> None:
        try:
            try:
                results: list[ItemResult] = ray.get(job.ref)
            except RayActorError as exc:
                if job.split:  # the split coordinator died (it handles dead workers itself); Ray restarts it
                    self._done_on(job)
                    self._requeue(job.held, job.spec, f"the split coordinator died: {_first_line(exc)}",
                                  worker_died=True)
                    return
                # Only the first of the dead worker's jobs replaces it: the others find a new handle in the slot
                # (and must neither replace the healthy replacement nor count against its in-flight work).
                if job.slot in self.pool.slots and job.slot.handle is job.handle:
                    self._replace_worker(job.slot)
                self._requeue(job.held, job.spec, f"the worker died: {_first_line(exc)}", worker_died=True)
                return
            except Exception as exc:
                self._done_on(job)
                self._retry(job.message, job.spec, f"the worker task failed: {type(exc).__name__}: {exc}")
                return
            self._done_on(job)
            result = results[0]
            if result.ok and job.analysis_ref is not None:
                self._await_analysis(job, result)
            elif result.ok:  # written on a later pass, after the workers are fed (see _store_finished)
                if result.processing_seconds > 0 and not job.split:
                    speed = result.audio_seconds / result.processing_seconds
                    self._speed = speed if self._speed is None else 0.8 * self._speed + 0.2 * speed
                self._unstored.append(_Unstored(job, result, 0, time.monotonic()))
            elif result.error_type in PERMANENT_RESULT_ERRORS:
                self._fail_permanently(job.message, job.spec, result.error or "?", result.error_type or "Error",
                                       result.worker)
            else:
                self._retry(job.message, job.spec, result.error or "unknown error", result.worker)
        except Exception as exc:  # never let one job stop the loop
            log.exception("internal error finishing job %s", job.spec.job_id)
            self._retry(job.message, job.spec, f"internal error {type(exc).__name__}: {exc}")

    def _await_analysis(self, job: _Job, result: ItemResult) -> None:
        """The transcript is ready and the analysis is not: store the transcript now (readable at once), keep
        the lease, and finish the job when the analysis comes back."""
        try:
            store_outputs(self.storage, job.spec, result, job.spec.formats or self.settings.output_formats)
        except StorageError as exc:
            log.warning("job %s: cannot store the transcript yet (%s); trying again with the job record",
                        job.spec.job_id, exc)
        log.info("job %s: transcript stored; waiting for its analysis", job.spec.job_id)
        self._analyses[job.analysis_ref] = (job, result)

    def _finish_analysis(self, ref: Any) -> None:
        job, result = self._analyses.pop(ref)
        try:
            try:
                answer: dict[str, Any] = ray.get(ref)
            except Exception as exc:  # the Voxtral worker died or its task failed: the transcript still stands
                answer = {"status": "failed", "error": f"the Voxtral worker failed: {type(exc).__name__}: {exc}",
                          "error_type": "AnalyzerFailed"}
            job.analysis = answer
            self._succeed(job, result)
        except Exception as exc:  # never let one job stop the loop
            log.exception("internal error finishing the analysis of job %s", job.spec.job_id)
            self._retry(job.message, job.spec, f"internal error {type(exc).__name__}: {exc}")

    def _analysis_record(self, job: _Job) -> dict[str, Any] | None:
        """Write ``<base>.analysis.json`` for a done analysis; the summary of it (or of its failure) that goes
        into the job's metrics record."""
        answer = job.analysis
        if answer is None:
            return None
        if answer.get("status") != "done":
            log.warning("job %s: analysis failed (the transcript is kept): %s", job.spec.job_id, answer.get("error"))
            return {"status": "failed", "error": answer.get("error"), "error_type": answer.get("error_type")}
        analysis = answer["analysis"]
        path = store_analysis(self.storage, JobPaths.for_job(job.spec), {"job_id": job.spec.job_id, **analysis})
        return {"status": "done", "path": path, "task": analysis["task"], "model": analysis["model"],
                "output_tokens": analysis["output_tokens"], "truncated": analysis["truncated"],
                "seconds": analysis["timings"]["total_seconds"]}

    def _replace_worker(self, slot: _Slot, why: str = "") -> None:
        """Put a standby worker in a dead one's slot, or start a fresh one without waiting for it: the loop keeps
        serving the other workers meanwhile (a lost node takes several at once, and waiting for each replacement
        in turn would stall them all), and the slot gets work again once the new worker answers."""
        self.pool.count_replacement()
        slot.inflight = 0
        with contextlib.suppress(Exception):  # unavailable may mean unreachable, not dead: make sure it is gone
            ray.kill(slot.handle, no_restart=True)
        why = why or f"worker pid={slot.info.get('pid')} died"
        node = slot.info.get("node_id")
        spare = self.pool.take_spare(avoid_node=node)
        if spare is not None:
            log.warning("%s; a standby worker (pid=%s) takes its place", why, spare[1].get("pid"))
            slot.handle, slot.info = spare
            # One on the same node may have gone with it (a lost node takes its standbys too): it gets work once
            # it answers, and is replaced in turn if it does not.
            slot.ready = spare[1].get("node_id") != node
            if not slot.ready:
                self._worker_infos[slot.handle.info.remote()] = (slot, slot.handle)
            return
        log.warning("%s; starting a replacement", why)
        slot.handle = self.pool._spawn()
        slot.ready = False
        self._worker_infos[slot.handle.info.remote()] = (slot, slot.handle)

    def _probe_workers(self) -> None:
        """Ask each worker with jobs whether it is alive (a call it answers on its own thread while a job runs), and
        take one that has been silent for ``worker_probe_seconds`` for lost: a frozen process, or a node gone, which
        Ray reports only after its health checks fail (many seconds) or, for a frozen process, never, while the loop
        kept renewing the leases of the jobs stuck on it. Its jobs run again at once on another worker."""
        limit = self.settings.worker_probe_seconds
        if limit <= 0:
            return
        if self._probes:
            refs = list(self._probes)
            for ref in ray.wait(refs, num_returns=len(refs), timeout=0)[0]:
                del self._probes[ref]  # answered (or its worker is known dead: its jobs' refs say so)
        now = time.monotonic()
        for ref, (slot, handle, sent) in list(self._probes.items()):
            if now - sent >= limit:
                del self._probes[ref]
                if slot.handle is handle and slot in self.pool.slots:
                    self._lost_worker(slot, now - sent)
        if now < self._next_probe:
            return
        self._next_probe = now + limit / 4
        probing = {id(handle) for _, handle, _ in self._probes.values()}  # one probe out per worker at a time
        for slot in self.pool.slots:
            if slot.ready and slot.inflight > 0 and id(slot.handle) not in probing:
                self._probes[slot.handle.alive.remote()] = (slot, slot.handle, now)

    def _lost_worker(self, slot: _Slot, silent: float) -> None:
        """Stop a worker that does not answer, give its slot to another, and run its jobs again there."""
        handle = slot.handle
        with self._lock:
            lost = [ref for ref, job in self._inflight.items() if job.handle is handle and not job.split]
            jobs = [self._inflight.pop(ref) for ref in lost]
        why = f"the worker (pid={slot.info.get('pid')}) did not answer for {silent:.1f} s"
        log.warning("%s: frozen, or its node is lost; %d job(s) of it run again elsewhere", why, len(jobs))
        self._replace_worker(slot, why=why)
        for job in jobs:
            self._requeue(job.held, job.spec, why, worker_died=True)

    def _collect_worker_infos(self) -> None:
        if not self._worker_infos:
            return
        ready, _ = ray.wait(list(self._worker_infos), num_returns=len(self._worker_infos), timeout=0)
        for ref in ready:
            slot, handle = self._worker_infos.pop(ref)
            try:
                info = ray.get(ref)
            except RayActorError as exc:  # it was sent no work yet: replace it from here
                log.warning("a replacement worker died while starting: %s", _first_line(exc))
                if slot.handle is handle and slot in self.pool.slots:
                    self._replace_worker(slot)
                continue
            if slot.handle is handle:
                slot.info, slot.ready = info, True

    @staticmethod
    def _done_on(job: _Job) -> None:
        """One job fewer in flight on its worker, unless the worker was replaced meanwhile (which reset it)."""
        if job.slot.handle is job.handle:
            job.slot.inflight -= 1

    def _store_finished(self) -> None:
        """Write the outputs of finished transcripts that are due (oldest first), for at most
        ``STORE_SECONDS_PER_PASS``: starting jobs comes first, since a worker left idle is time lost, while a
        transcript written a moment later is not (after an outage, dozens wait to be written)."""
        started = time.monotonic()
        due = sorted((u for u in self._unstored if u.due <= started), key=lambda u: u.due)
        for unstored in due:
            if time.monotonic() - started > STORE_SECONDS_PER_PASS:
                return
            if unstored not in self._unstored:
                continue
            self._unstored.remove(unstored)
            try:
                self._succeed(unstored.job, unstored.result, unstored.tries, unstored.failing_since)
            except Exception as exc:  # never let one job stop the loop
                log.exception("internal error storing job %s", unstored.job.spec.job_id)
                self._retry(unstored.job.message, unstored.job.spec, f"internal error {type(exc).__name__}: {exc}")

    def _delete_finished(self) -> None:
        """Delete the messages of the jobs stored or dead-lettered since the last call, in batches. A delete that
        fails (the endpoint is down) is tried again on later passes while the lease is safe: a message left
        behind would come back, and a bad one would be dead-lettered twice."""
        now = time.monotonic()
        retry = [m for m, _ in self._undeleted] if self._undeleted and now >= self._next_delete else []
        if not self._to_delete and not retry:
            return
        since = dict((m.message_id, t) for m, t in self._undeleted)
        messages, self._to_delete = self._to_delete + retry, []
        self._undeleted = [(m, t) for m, t in self._undeleted if m not in retry]
        try:
            failed = self.queue.delete_many(messages)
        except QueueError as exc:
            failed = messages
            log.warning("%d finished job(s) whose messages could not be deleted yet (%s)", len(failed), exc)
        for message in failed:
            first = since.get(message.message_id, now)
            if self._local_retry(first):
                self._undeleted.append((message, first))
            else:
                log.warning("job %s is finished but its message could not be deleted; a redelivery will find it "
                            "done", salvage(message.body).get("job_id") or message.message_id)
        self._next_delete = now + local_backoff(1)

    def _succeed(self, job: _Job, result: ItemResult, tries: int = 0, failing_since: float | None = None) -> None:
        spec = job.spec
        formats = spec.formats or self.settings.output_formats
        if time.monotonic() < self._storage_down_until:  # S3 just failed: wait for the next try, spend no call
            self._unstored.append(_Unstored(job, result, tries, self._storage_down_until, failing_since))
            return
        try:
            analysis = self._analysis_record(job)
            metrics, wrote = store_success(self.storage, spec, result, formats, received_at=job.received_at,
                                           started_at=job.started_at, attempt=job.message.receive_count,
                                           analysis=analysis)
        except StorageError as exc:
            if exc.permanent:
                self._fail_permanently(job.message, spec, f"cannot store the outputs: {exc}", "OutputError",
                                       result.worker)
            elif self._local_retry(failing_since := failing_since or time.monotonic()):
                tries += 1  # keep the transcript and its lease; write it again after a backoff
                self._storage_failed(tries)
                self._unstored.append(_Unstored(job, result, tries, time.monotonic() + local_backoff(tries),
                                                failing_since))
                log.warning("job %s: cannot store the outputs (%s); the transcript is kept and written again in "
                            "%.1f s (try %d)", spec.job_id, exc, local_backoff(tries), tries)
            else:
                self._retry(job.message, spec, f"cannot store the outputs ({tries + 1} tries here): {exc}",
                            result.worker)
            return
        self._storage_down_until = 0.0  # S3 answers again: the jobs waiting for it go now
        for waiting in self._unstored:
            waiting.due = min(waiting.due, time.monotonic())
        self._to_delete.append(job.message)  # deleted ten at a time at the end of the pass (_delete_finished)
        self.report.outcomes.append(JobOutcome(spec.job_id, "done", audio_seconds=result.audio_seconds,
                                               processing_seconds=result.processing_seconds))
        record_job_done("queue", result.audio_seconds, result.processing_seconds)
        if self.autoscaler is not None:
            self.autoscaler.observe.remote(result.audio_seconds, result.processing_seconds)
        log.info("job done: %s (%.1f s audio in %.2f s, %.1fx real time%s)", spec.job_id, result.audio_seconds,
                 result.processing_seconds, result.real_time_factor,
                 "" if wrote else "; another worker had finished it too")
        self._notify(spec, {"job_id": spec.job_id, "status": "done", "metrics": metrics,
                            "outputs": metrics["outputs"]})

    def _fail_permanently(self, message: Message, spec: JobSpec | None, reason: str, error_type: str,
                          worker: dict[str, Any] | None = None, *, write_record: bool = True) -> None:
        """Error record beside the would-be output, message to the dead-letter queue with the reason."""
        known = salvage(message.body) if spec is None else {"job_id": spec.job_id,
                                                            "s3_output_path": spec.s3_output_path}
        job_id = known.get("job_id")
        record = error_record(reason, error_type, job_id=job_id, attempt=message.receive_count, worker=worker,
                              message_id=message.message_id)
        if write_record and job_id and known.get("s3_output_path"):
            try:
                store_error(self.storage, output_base(known["s3_output_path"], job_id), record)
            except StorageError as exc:
                log.warning("cannot write the error record of job %s: %s", job_id, exc)
        try:
            self.queue.dead_letter(message, reason, error_type, job_id)
            self._to_delete.append(message)  # retried here if it fails: the copy is in the dead-letter queue
        except QueueError as exc:
            log.error("cannot move message %s to the dead-letter queue (%s); SQS's redrive will", message.message_id,
                      exc)
        name = job_id or f"message {message.message_id}"
        self.report.outcomes.append(JobOutcome(name, "failed", reason=reason))
        record_job_failed("queue", error_type)
        log.error("job failed: %s: %s (moved to the dead-letter queue)", name, reason)
        if spec is not None:
            self._notify(spec, {"job_id": spec.job_id, "status": "failed", "error": record})

    def _retry(self, message: Message, spec: JobSpec | None, reason: str,
               worker: dict[str, Any] | None = None) -> None:
        """Leave the message to SQS: visible again after the retry delay, dead-lettered by the redrive policy
        after ``max_receive_count`` receives. On the last attempt the error record is written too."""
        job_id = spec.job_id if spec else salvage(message.body).get("job_id")
        last = message.receive_count >= self.qs.max_receive_count
        if last:
            record_job_failed("queue", "RetriesExhausted")
        if spec is not None and last:
            with contextlib.suppress(StorageError):
                store_error(self.storage, output_base(spec.s3_output_path, spec.job_id),
                            error_record(reason, "RetriesExhausted", job_id=spec.job_id,
                                         attempt=message.receive_count, worker=worker,
                                         message_id=message.message_id))
        self._release([message], self.qs.retry_delay_seconds, "retry later")
        self.report.outcomes.append(JobOutcome(job_id or message.message_id, "retry", reason=reason))
        log.warning("job %s failed on attempt %d/%d: %s; %s", job_id or message.message_id, message.receive_count,
                    self.qs.max_receive_count, reason,
                    "SQS moves it to the dead-letter queue" if last else
                    f"retrying in {self.qs.retry_delay_seconds} s")

    def _notify(self, spec: JobSpec, payload: dict[str, Any]) -> None:
        if spec.webhook_url:
            self._webhooks.submit(post_json, spec.webhook_url, payload, timeout=self.qs.webhook_timeout,
                                  retries=self.qs.webhook_retries, backoff=self.qs.webhook_backoff_seconds)


def _first_line(exc: BaseException) -> str:
    """Ray's actor errors run to dozens of lines; the first says what happened."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
