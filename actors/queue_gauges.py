"""Queue depth gauges for every queue worker, autoscaling or not: main, high-priority and dead-letter queues,
visible and in flight (``rayscribe_queue_messages{queue, state}``, scraped as ``ray_rayscribe_queue_messages``).

A thread in the worker's process reads the three queues' approximate counts every ``RAYSCRIBE_QUEUE_GAUGE_SECONDS``
and sets the gauges again every second in between (Ray exports a gauge only in the report after it was set). With
``--autoscale`` the policy actor reads the same counts for its decisions and sets the same gauges; this one is then
not started.
"""

from __future__ import annotations

import logging
import threading
import time

from actors import metrics
from rayscribe.config.queue import QueueSettings
from rayscribe.queue.sqs import JobQueue, QueueError

log = logging.getLogger("rayscribe.metrics")

QUEUES = (("main", "normal"), ("high", "high"), ("dlq", "dlq"))  # gauge label, JobQueue's name
REFRESH_SECONDS = 1.0


class QueueGauges:
    """Polls the queue depths on a daemon thread from :meth:`start` until :meth:`stop`."""

    def __init__(self, queue_settings: QueueSettings, interval: float | None = None) -> None:
        fast = queue_settings.model_copy(update={"aws_max_attempts": min(2, queue_settings.aws_max_attempts)})
        self.queue = JobQueue(fast)
        self.interval = interval if interval is not None else queue_settings.queue_gauge_seconds
        self.latest: dict[str, dict[str, int]] = {}  # gauge label -> {"visible", "in_flight"}, once read
        self.read_at: float | None = None  # time.time() of the last successful read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rayscribe-queue-gauges", daemon=True)

    def start(self) -> QueueGauges:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def poll(self) -> None:
        """Read every queue's depth once (a queue that cannot be read keeps its last value)."""
        for label, which in QUEUES:
            try:
                counts = self.queue.counts(which)
            except QueueError as exc:
                log.debug("cannot read the depth of the %s queue: %s", label, exc)
                continue
            self.latest[label] = {"visible": counts["visible"], "in_flight": counts["in_flight"]}
            self.read_at = time.time()

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_poll:
                try:
                    self.poll()
                except Exception:  # never let the gauges end the worker
                    log.exception("reading the queue depths failed; trying again next interval")
                next_poll = time.monotonic() + self.interval
            for label, counts in list(self.latest.items()):
                metrics.queue_messages(label, counts["visible"], counts["in_flight"])
            self._stop.wait(REFRESH_SECONDS)
