"""What happens to a job once its worker call comes back (rq's ``handle_job_success`` / ``_failure`` / ``_retry``):
outputs stored and the message deleted, a permanent failure dead-lettered with its reason, a transient one run
again here under the lease or left to SQS's retry, and the job's webhook told.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

from actors.ingest.state import Held, Job, LoopState, Unstored
from actors.metrics import job_done as record_job_done
from actors.metrics import job_failed as record_job_failed
from actors.pool import Completion
from rayscribe.queue.jobspec import JobSpec, output_base, salvage
from rayscribe.queue.jobstore import (
    JobPaths,
    error_record,
    store_analysis,
    store_error,
    store_outputs,
    store_success,
)
from rayscribe.queue.policy import WORKER_DEATH_RERUNS, is_permanent, local_backoff
from rayscribe.queue.report import JobOutcome
from rayscribe.queue.sqs import Message, QueueError
from rayscribe.queue.webhook import post_json
from rayscribe.storage import StorageError
from rayscribe.work import ItemResult

log = logging.getLogger("rayscribe.ingest")

STORE_SECONDS_PER_PASS = 0.25  # writing finished transcripts stops for a pass after this, so workers get fed


class Outcomes(LoopState):
    """Handling finished, failed and retried jobs."""

    analyzer: Any
    autoscaler: Any

    def _handle_completion(self, done: Completion) -> None:
        """A worker call came back: each job it carried succeeds, fails or runs again on its own."""
        jobs: list[Job] = done.ticket.tag
        if done.results is None:
            for job in jobs:
                if done.worker_lost:
                    self._run_again(job.held, job.spec, done.error, worker_died=True)
                else:
                    self._handle_retry(job.message, job.spec, done.error)
            return
        for job, result in zip(jobs, done.results):
            self._handle_result(job, result)

    def _handle_result(self, job: Job, result: ItemResult) -> None:
        try:
            if result.ok and job.analysis_ref is not None:
                self._await_analysis(job, result)
            elif result.ok:  # written on a later pass, after the workers are fed (see _store_finished)
                self._unstored.append(Unstored(job, result, 0, time.monotonic()))
            elif is_permanent(result.error_type):
                self._handle_failure(job.message, job.spec, result.error or "?", result.error_type or "Error",
                                       result.worker)
            else:
                self._handle_retry(job.message, job.spec, result.error or "unknown error", result.worker)
        except Exception as exc:  # never let one job stop the loop
            log.exception("internal error finishing job %s", job.spec.job_id)
            self._handle_retry(job.message, job.spec, f"internal error {type(exc).__name__}: {exc}")

    def _run_again(self, held: Held, spec: JobSpec | None, reason: str, *, worker_died: bool = False) -> None:
        """Run the job again here, keeping its lease: at once on another worker after a worker death (once per
        receive: a job that kills workers goes back to SQS), after a backoff for a transient failure. When its
        local tries are spent, SQS retries it (:meth:`_handle_retry`)."""
        job_id = spec.job_id if spec else salvage(held.message.body).get("job_id") or held.message.message_id
        if worker_died:
            held.reruns += 1
            if held.reruns > WORKER_DEATH_RERUNS:
                self._handle_retry(held.message, spec, reason)
                return
            held.not_before = 0.0
        else:
            held.tries += 1
            held.failing_since = held.failing_since or time.monotonic()
            if not self._local_retry(held.failing_since):
                self._handle_retry(held.message, spec, f"{reason} ({held.tries} tries here)")
                return
            held.not_before = time.monotonic() + local_backoff(held.tries)
            self._storage_failed(held.tries)
        with self._lock:
            (self._ready if held.payload is not None else self._inbox).appendleft(held)
        self.report.outcomes.append(JobOutcome(job_id, "requeued", reason=reason))
        log.warning("job %s: %s; %s", job_id, reason, "running it again on another worker" if worker_died else
                    f"trying again in {local_backoff(held.tries):.1f} s (local try {held.tries})")
        self._wake.set()

    # -- analysis (Voxtral) -------------------------------------------------------------------------------

    def _await_analysis(self, job: Job, result: ItemResult) -> None:
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
            self._handle_success(job, result)
        except Exception as exc:  # never let one job stop the loop
            log.exception("internal error finishing the analysis of job %s", job.spec.job_id)
            self._handle_retry(job.message, job.spec, f"internal error {type(exc).__name__}: {exc}")

    def _analysis_record(self, job: Job) -> dict[str, Any] | None:
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
        worker = {k: v for k, v in (answer.get("worker") or {}).items() if k in ("node_id", "pid", "gpu_ids")}
        return {"status": "done", "path": path, "task": analysis["task"], "model": analysis["model"],
                "output_tokens": analysis["output_tokens"], "truncated": analysis["truncated"],
                "seconds": analysis["timings"]["total_seconds"], "worker": worker}

    # -- success --------------------------------------------------------------------------------------------

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
                self._handle_success(unstored.job, unstored.result, unstored.tries, unstored.failing_since)
            except Exception as exc:  # never let one job stop the loop
                log.exception("internal error storing job %s", unstored.job.spec.job_id)
                self._handle_retry(unstored.job.message, unstored.job.spec,
                                   f"internal error {type(exc).__name__}: {exc}")

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

    def _handle_success(self, job: Job, result: ItemResult, tries: int = 0, failing_since: float | None = None) -> None:
        spec = job.spec
        formats = spec.formats or self.settings.output_formats
        if time.monotonic() < self._storage_down_until:  # S3 just failed: wait for the next try, spend no call
            self._unstored.append(Unstored(job, result, tries, self._storage_down_until, failing_since))
            return
        try:
            analysis = self._analysis_record(job)
            metrics, wrote = store_success(self.storage, spec, result, formats, received_at=job.received_at,
                                           started_at=job.started_at, attempt=job.message.receive_count,
                                           analysis=analysis)
        except StorageError as exc:
            if exc.permanent:
                self._handle_failure(job.message, spec, f"cannot store the outputs: {exc}", "OutputError",
                                       result.worker)
            elif self._local_retry(failing_since := failing_since or time.monotonic()):
                tries += 1  # keep the transcript and its lease; write it again after a backoff
                self._storage_failed(tries)
                self._unstored.append(Unstored(job, result, tries, time.monotonic() + local_backoff(tries),
                                               failing_since))
                log.warning("job %s: cannot store the outputs (%s); the transcript is kept and written again in "
                            "%.1f s (try %d)", spec.job_id, exc, local_backoff(tries), tries)
            else:
                self._handle_retry(job.message, spec, f"cannot store the outputs ({tries + 1} tries here): {exc}",
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

    # -- failure --------------------------------------------------------------------------------------------

    def _handle_failure(self, message: Message, spec: JobSpec | None, reason: str, error_type: str,
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

    def _handle_retry(self, message: Message, spec: JobSpec | None, reason: str,
               worker: dict[str, Any] | None = None) -> None:
        """Leave the message to SQS: visible again after the retry delay. On the last attempt
        (``max_receive_count`` receives) the retries are spent: the job fails here, like a permanent failure,
        so it reaches the dead-letter queue with its last reason and its error record (SQS's redrive would move
        it only on one more receive, and without the reason)."""
        job_id = spec.job_id if spec else salvage(message.body).get("job_id")
        if message.receive_count >= self.qs.max_receive_count:
            self._handle_failure(message, spec, f"retries exhausted after {message.receive_count} receive(s); "
                                 f"last: {reason}", "RetriesExhausted", worker)
            return
        self._release([message], self.qs.retry_delay_seconds, "retry later")
        self.report.outcomes.append(JobOutcome(job_id or message.message_id, "retry", reason=reason))
        log.warning("job %s failed on attempt %d/%d: %s; retrying in %d s", job_id or message.message_id,
                    message.receive_count, self.qs.max_receive_count, reason, self.qs.retry_delay_seconds)

    def _notify(self, spec: JobSpec, payload: dict[str, Any]) -> None:
        if spec.webhook_url:
            self._webhooks.submit(post_json, spec.webhook_url, payload, timeout=self.qs.webhook_timeout,
                                  retries=self.qs.webhook_retries, backoff=self.qs.webhook_backoff_seconds)
