"""The queue worker's loop: SQS job messages in, the Whisper pool in the middle, transcripts and metrics out to S3.

It reads as rq's ``Worker.work()`` does, one pass after another of named steps:

- **dequeue** (:mod:`actors.ingest.read_ahead`): a receiver thread long-polls (high-priority queue first, then the
  main queue) and never asks for more messages than the pool has places for; the loop reads the next jobs' inputs
  ahead into Ray's object store while the workers are busy.
- **execute** (:meth:`IngestLoop._execute`): each job goes to the worker the pool expects to be free soonest;
  short jobs read ahead are packed into one worker call, as the batch path packs short files, when the engine
  shares model batches across files. Each job keeps its own lease, outputs, retries and dead-lettering.
- **handle success / failure / retry** (:mod:`actors.ingest.outcomes`): outputs, metrics and the done marker
  written (after the workers are fed), then the message deleted; a permanent failure dead-lettered with its reason;
  a transient one run again here under the lease, or left to SQS's redrive policy.
- **heartbeat** (:mod:`actors.ingest.state`): every held lease renewed.

The pool (:mod:`actors.pool`) owns the workers: it probes them, replaces dead or frozen ones and hands their calls
back as lost, and the loop runs those jobs again (once per receive: a job that kills workers goes back to SQS).
Every job is handled inside its own ``try``, so a poison message can neither block the queue nor kill the loop.

Stopping: :meth:`IngestLoop.request_stop` stops receiving; jobs in flight finish (or, with ``release=True``, their
leases are released at once with visibility 0) and messages not yet started are released immediately.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray

from actors.ingest.read_ahead import ReadAhead
from actors.ingest.state import Held, Job
from actors.metrics import refresh_gauges as refresh_metric_gauges
from actors.pool import WhisperPool, WorkerSlot
from actors.split import should_split
from rayscribe.config.queue import QueueSettings
from rayscribe.config.settings import Settings
from rayscribe.engines import TranscribeOptions
from rayscribe.queue.policy import analyze_options
from rayscribe.queue.report import IngestReport
from rayscribe.queue.sqs import QueueError
from rayscribe.scheduling import group_target, is_short, pack_next

log = logging.getLogger("rayscribe.ingest")

WAIT_STEP = 0.5  # longest the loop blocks on Ray before looking at its inbox, heartbeats and stop flags
FOLLOW_SECONDS = 1.0  # how often the loop asks the autoscaling policy how many workers it wants
RECEIVE_BACKOFF_MAX = 1.0  # longest pause between failed receives: an endpoint that comes back is used soon


class IngestLoop(ReadAhead):
    """Polls the queues and runs their jobs on ``pool`` (started) until stopped or, with ``drain``, until both
    queues are empty and nothing is in flight."""

    def __init__(self, settings: Settings, queue_settings: QueueSettings, pool: WhisperPool, *,
                 drain: bool = False, analyzer: Any = None, analyzer_error: str | None = None,
                 autoscaler: Any = None) -> None:
        super().__init__(settings, queue_settings, pool)
        self.analyzer = analyzer  # a VoxtralWorker handle for jobs with ``analyze``, or None
        self.analyzer_error = analyzer_error or "audio understanding is off on this worker"
        self.drain = drain
        self.receiving = threading.Event()  # set once the first receive call has returned: the loop takes work
        self._arrived = threading.Event()  # the receiver brought messages since the loop's pass began
        self._idle_polls = 0
        self._fatal: str | None = None
        self._model = str(pool.slots[0].info.get("model") if pool.slots else settings.model)
        # The queue-driven policy (actors/autoscaler.py), asked between jobs how many workers to run.
        self.autoscaler = autoscaler
        self._target_ref: Any = None
        self._next_follow = 0.0

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

    def running(self) -> bool:
        """Whether the loop takes work: its first receive has returned and no stop was asked for (health)."""
        return self.receiving.is_set() and not self._stopping.is_set()

    def _busy(self) -> bool:
        """Jobs this loop still has to finish before it may stop."""
        return bool(self._inflight or self._analyses or self._unstored)

    # -- receiving (own thread) -------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        wait = min(self.qs.wait_seconds, 1) if self.drain else self.qs.wait_seconds
        failures = 0
        while not self._stopping.is_set():
            room = min(int(self.capacity - self.held_units()), self.qs.receive_batch)
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
                self._inbox.extend(Held(m, now) for m in messages)
                self._queues_dry = not messages
                if not messages:
                    self._idle_polls += 1
            if messages:  # the loop may be waiting on Ray: new work for a free worker should not wait for a job
                self._arrived.set()
                self._wake.set()

    # -- the loop (rq's work()) ---------------------------------------------------------------------------

    def run(self) -> IngestReport:
        started = time.perf_counter()
        self.report.engine = self.pool.engine()
        self.packing = self.pool.packs_files()
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
                self.capacity = self._capacity()
                self._execute()  # feeding the workers comes first, then reading ahead, then late writes
                self._prefetch()
                self._store_finished()
                self._delete_finished()
                refresh_metric_gauges()
                if time.monotonic() - last_beat >= self.qs.heartbeat_seconds:
                    self._heartbeat()
                    last_beat = time.monotonic()
                self._wait_and_handle()
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
                jobs = [j for js in self._inflight.values() for j in js] + [job for job, _ in self._analyses.values()]
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

    def _wait_and_handle(self) -> None:
        """Wait (bounded, cut short when messages arrive) for worker calls and analyses, and handle what is back.
        Every call done by then frees its worker before the next pass starts jobs."""
        writes_due = any(u.due <= time.monotonic() for u in self._unstored)  # then look, don't wait
        waiting = bool(self._inflight or self._analyses)
        timeout = 0.0 if writes_due or not self._inflight else WAIT_STEP
        completions = self.pool.poll(timeout, interrupt=self._arrived)
        handled = bool(completions)
        for done in completions:
            with self._lock:
                self._inflight.pop(done.ticket.ref, None)
            self._handle_completion(done)
        if self._analyses:
            refs = list(self._analyses)
            wait = 0.0 if writes_due or handled or self._inflight else WAIT_STEP
            first, _ = ray.wait(refs, num_returns=1, timeout=wait)
            ready = ray.wait(refs, num_returns=len(refs), timeout=0)[0] if first else []
            for ref in ready:
                self._finish_analysis(ref)
            handled = handled or bool(ready)
        if handled:
            self._wake.set()
        elif not waiting:
            self._wake.wait(0.05 if self._inbox or self._ready or self._unstored else WAIT_STEP)
            self._wake.clear()  # or an event already seen would spin this loop

    def _follow_autoscaler(self) -> None:
        """Resize the pool to the policy's wish (never waits: the answer is picked up on a later pass)."""
        if self.pool.poll_started():
            self.report.engine = self.report.engine or self.pool.engine()
            self.packing = self.pool.packs_files()
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

    # -- execute: starting jobs ---------------------------------------------------------------------------

    def _execute(self) -> None:
        while not self._stopping.is_set():
            # Once the queues run dry, the last jobs go only to idle workers: queued behind a busy worker's job,
            # one would keep the whole batch waiting while other workers stand idle.
            worker = self.pool.free_worker(limit=1 if self._queues_dry else None)
            if worker is None:
                return
            # While short jobs are packed, a worker already busy gets its next call once a group's worth is read
            # ahead (or nothing is left to read): read first, they go together instead of one by one.
            if self.packing and worker.inflight > 0 and self._worth_waiting():
                return
            held = self._dequeue(inbox=not self.packing or worker.inflight == 0)
            if held is None:
                return
            self._step(held, "starting", lambda entry, w=worker: self._start(entry, w),  # type: ignore[misc]
                       lambda _, sent: self._inflight.__setitem__(*sent))

    def _group_target(self) -> float:
        """Audio per packed call: the short jobs held (those not read yet at the length seen lately) spread as two
        calls per worker (one each once the queues are dry: the last jobs go to idle workers only), within one model
        window and ``group_seconds`` (:func:`group_target`). Under the lock."""
        unread = sum(1 for h in self._inbox if h.item is None) * (self._typical or 0.0)
        return group_target(self._short_ready_seconds() + unread, max(1, self.pool.ready_workers()),
                            self.settings.group_seconds, calls_per_worker=1 if self._queues_dry else 2)

    def _worth_waiting(self) -> bool:
        """Whether the short jobs read ahead are less than a group while more are still to be read."""
        if self._queues_dry:
            return False
        with self._lock:
            if not any(h.item is None for h in self._inbox):
                return False
            return self._short_ready_seconds() < self._group_target()

    def _short_ready_seconds(self) -> float:
        """Audio of the short jobs read ahead. Under the lock."""
        return sum(h.item.duration or 0.0 for h in self._ready
                   if h.item is not None and is_short(h.item.duration, self.settings.short_file_seconds))

    def _companions(self, first: Held) -> list[Held]:
        """Short jobs read ahead to pack with ``first`` into one worker call (taken from the read-ahead list, and
        counted in ``_starting`` until they are in flight): same options, within the group's audio target."""
        item = first.item
        if (not self.packing or item is None or first.reruns
                or not is_short(item.duration, self.settings.short_file_seconds)
                or should_split(item, self.settings, len(self.pool.slots))):
            return []
        language = first.spec.language if first.spec else None
        task = first.spec.task if first.spec else None
        with self._lock:
            candidates = [h for h in self._ready if h.item is not None and not h.reruns and h.spec is not None
                          and h.spec.language == language and h.spec.task == task
                          and is_short(h.item.duration, self.settings.short_file_seconds)]
            if not candidates:
                return []
            target = self._group_target()
            chosen = [candidates[i] for i in pack_next(item, [h.item for h in candidates if h.item], target)]
            for held in chosen:
                self._ready.remove(held)
            self._starting += len(chosen)
        return chosen

    def _start(self, held: Held, worker: WorkerSlot) -> tuple[Any, list[Job]] | None:
        """Send the job (and short jobs packed with it) to ``worker``; the call's ref and its jobs."""
        if not self._prepare(held):
            return None
        companions = self._companions(held)
        group = [held, *companions]
        try:
            jobs = [self._job(entry, worker) for entry in group]
            spec = group[0].spec
            assert spec is not None
            options = (TranscribeOptions.from_settings(self.settings).with_(language=spec.language, task=spec.task)
                       if spec.language or spec.task else None)
            ticket = self.pool.submit([e.item for e in group if e.item], [e.payload for e in group], options,
                                      worker=worker, tag=jobs)
        except Exception:
            with self._lock:  # the companions wait for another call; the first job is retried by _step
                self._ready.extendleft(reversed(companions))
            raise
        finally:
            with self._lock:
                self._starting -= len(companions)
        for job in jobs:
            job.split = ticket.split
            log.info("job started: %s (%s, %.0f KB, attempt %d, %s priority%s)", job.spec.job_id,
                     job.spec.s3_input_path, job.held.size / 1024, job.message.receive_count, job.spec.priority,
                     f", packed with {len(jobs) - 1} other(s)" if len(jobs) > 1 else "")
        return ticket.ref, jobs

    def _job(self, held: Held, worker: WorkerSlot | None = None) -> Job:
        """A job about to be sent; Voxtral starts on its audio now, beside Whisper, when it asks for analysis: the
        Voxtral partner on ``worker``'s GPU when the pool pairs them, else the worker's one analyzer."""
        spec = held.spec
        assert spec is not None
        job = Job(held=held, spec=spec, started_at=time.time())
        if spec.analyze:
            analyzer = (self.pool.partner(worker) if worker is not None else None) or self.analyzer
            if analyzer is None:
                log.warning("job %s asks for analysis, which this worker cannot run (%s); transcribing only",
                            spec.job_id, self.analyzer_error)
                job.analysis = {"status": "failed", "error": self.analyzer_error, "error_type": "AnalyzerUnavailable"}
            else:
                job.analysis_ref = analyzer.analyze.remote(held.payload, analyze_options(spec.analyze),
                                                                spec.job_id)
        return job
