"""Taking the next job (rq's ``dequeue``): from the inputs read ahead, else from the inbox, and reading the next
jobs' inputs into Ray's object store while the workers are busy, so a worker that frees up starts at once and the
workers keep going while S3 is briefly unreachable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import ray

from actors.ingest.outcomes import Outcomes
from actors.ingest.state import Held, PermanentJobError
from rayscribe.audio import probe_duration
from rayscribe.queue.jobspec import JobSpecError, parse_job
from rayscribe.queue.jobstore import is_done
from rayscribe.queue.policy import ReadyJob, input_error_type, next_ready
from rayscribe.queue.report import JobOutcome
from rayscribe.storage import StorageError, io_threads, is_s3
from rayscribe.work import WorkItem

log = logging.getLogger("rayscribe.ingest")
T = TypeVar("T")

PREFETCH_PER_PASS = 4  # inputs read ahead per pass of the loop, so reading never holds up finished jobs for long
PACKED_PREFETCH_PER_PASS = 8  # the same while short jobs are packed: a worker call then takes several of them


class ReadAhead(Outcomes):
    """The inbox and the inputs read ahead."""

    _model: str

    def _dequeue(self, read_ahead: bool = True, inbox: bool = True) -> Held | None:
        """The next entry that may start now: one read ahead (see :func:`next_ready`), else (with ``inbox``) the
        first inbox entry that is not backing off after a transient failure (none while S3 is failing, unless its
        input is in hand). It counts in ``_starting`` until it is in flight or dealt with."""
        now = time.monotonic()
        with self._lock:
            if read_ahead and self._ready:
                self._starting += 1
                jobs = [ReadyJob(h.spec.priority if h.spec else "normal", h.item.duration if h.item else None)
                        for h in self._ready]
                chosen = self._ready[next_ready(jobs, self._queues_dry)]
                self._ready.remove(chosen)
                return chosen
            for held in self._inbox if inbox else ():
                if held.payload is None and now < self._storage_down_until:
                    continue
                if held.not_before <= now:
                    self._inbox.remove(held)
                    self._starting += 1
                    return held
        return None

    def _prefetch(self) -> None:
        """Read the inputs of the next jobs while the workers are busy (up to ``prefetch_per_worker`` places per
        worker, a packed short job taking its share of one, and ``prefetch_max_mb``)."""
        limit = self.pool.ready_workers() * self.settings.prefetch_per_worker
        budget = self.settings.prefetch_max_mb * 1024 * 1024
        for _ in range(PACKED_PREFETCH_PER_PASS if self.packing else PREFETCH_PER_PASS):
            with self._lock:
                ready = list(self._ready)
            if sum(self._units(h) for h in ready) >= limit or sum(h.size for h in ready) >= budget:
                return
            if self._stopping.is_set():
                return
            held = self._dequeue(read_ahead=False)
            if held is None:
                return
            self._step(held, "reading", self._prepare, lambda entry, _: self._ready.append(entry))

    def _step(self, held: Held, what: str, step: Callable[[Held], T | None], keep: Callable[[Held, T], Any]) -> None:
        """Run ``step`` on an entry taken from the inbox (counted in ``_starting`` until then); a result is kept
        with ``keep`` under the lock, so the entry is always counted as held. One message never stops the loop."""
        result: T | None = None
        try:
            result = step(held)
        except Exception as exc:
            log.exception("internal error %s message %s", what, held.message.message_id)
            self._handle_retry(held.message, None, f"internal error {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._starting -= 1
                if result:
                    keep(held, result)

    def _prepare(self, held: Held) -> bool:
        """Parse the message and read its input into Ray's object store (once; a job run again keeps it). False
        when the message was dealt with instead: failed, found done, or put back to be read again later."""
        if held.payload is not None:
            return True
        message = held.message
        try:
            spec = parse_job(message.body)
        except JobSpecError as exc:
            self._handle_failure(message, None, str(exc), "InvalidMessage")
            return False
        local = [p for p in (spec.s3_input_path, spec.s3_output_path) if not is_s3(p)]
        if local and not self.qs.allow_local_paths:
            self._handle_failure(message, None, f"the job names local path(s) {', '.join(local)}; queue jobs read "
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
            self._handle_failure(message, spec, str(exc), "WrongModel")
            return False
        except StorageError as exc:
            if exc.permanent:
                self._handle_failure(message, spec, str(exc), input_error_type(exc.missing))
            else:
                self._run_again(held, spec, f"cannot read the input: {exc}")
            return False
        held.spec, held.size, held.payload = spec, len(data), ray.put(data)
        held.item = WorkItem(key=spec.job_id, name=spec.s3_input_path, source=spec.s3_input_path,
                             duration=probe_duration(data), attempts=message.receive_count)
        self._seen_duration(held.item.duration)
        return True
