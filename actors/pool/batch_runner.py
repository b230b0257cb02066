"""The batch path's use of the pool: plan groups of files up front, keep every worker fed, retry what failed.

Short files are grouped so one worker call transcribes several of them in shared model batches. A list of items
is planned whole; any other iterable (an S3 listing, which may hold millions of keys) is drawn a stretch at a
time, while the workers have little left to take, and each stretch is planned as it comes. Files whose call
failed (their worker died, or the call broke) are retried once, each on its own, so a file that kills workers
cannot take its neighbours down with it; a file that fails twice is reported failed with the reason.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING

import ray

from actors.pool.workers import MAX_ATTEMPTS, WorkerSlot
from rayscribe.scheduling import plan_groups
from rayscribe.work import ItemResult, WorkItem

if TYPE_CHECKING:
    from actors.pool.pool import WhisperPool

log = logging.getLogger("rayscribe.pool")

WAIT_STEP = 0.5  # longest one wait on the workers lasts, so probes and replacements are looked after meanwhile
STREAM_STRETCH = 64  # items drawn at once from a lazy iterable


def run_items(pool: WhisperPool, items: Iterable[WorkItem], load: Callable[[WorkItem], bytes | None],
              on_result: Callable[[ItemResult], None] | None = None) -> list[ItemResult]:
    """Transcribe ``items`` on ``pool`` (started here if it is not); ``load`` reads an item's bytes when it is about
    to be sent (so memory stays bounded), or returns None for an item the worker reads itself from its
    ``source`` (an S3 object). Returns one result per item, in completion order."""
    if not pool.slots:
        pool.start()
    settings = pool.settings
    stream = None if isinstance(items, list) else iter(items)
    queue: deque[list[WorkItem]] = deque(plan_groups(items, settings.short_file_seconds, settings.group_seconds,
                                                     pool.size) if isinstance(items, list) else ())
    results: list[ItemResult] = []

    def draw() -> None:
        """Take the next stretch of a lazy iterable once fewer groups wait than the workers could start on."""
        nonlocal stream
        while stream is not None and len(queue) < pool.size * settings.max_inflight_per_worker:
            stretch = list(islice(stream, STREAM_STRETCH))
            if not stretch:
                stream = None
                return
            queue.extend(plan_groups(stretch, settings.short_file_seconds, settings.group_seconds, pool.size))

    def finish(result: ItemResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    def retry(failed: list[WorkItem], reason: str) -> None:
        for item in failed:
            if item.attempts >= MAX_ATTEMPTS:
                log.error("file failed after %d attempts: %s: %s", item.attempts, item.name, reason)
                finish(ItemResult(key=item.key, name=item.name, attempts=item.attempts,
                                  error=f"failed {item.attempts} times; last: {reason}", error_type="WorkerFailure"))
            else:
                log.warning("retrying %s alone: %s", item.name, reason)
                queue.appendleft([item])

    draw()
    while queue or pool.pending:
        while queue and (worker := pool.free_worker()) is not None:
            _send(pool, worker, queue.popleft(), load, finish)
        for done in pool.poll(WAIT_STEP):
            if done.results is not None:
                for result in done.results:
                    finish(result)
                continue
            if done.coordinator:  # the retry goes to the restarted coordinator, not to one still restarting
                pool.await_coordinator()
            retry(done.ticket.items, done.error)
        draw()
    return results


def _send(pool: WhisperPool, worker: WorkerSlot, group: list[WorkItem],
          load: Callable[[WorkItem], bytes | None], finish: Callable[[ItemResult], None]) -> None:
    """Read the group's files and send them (None: the worker reads the item's source); a file that cannot be
    read fails alone."""
    items, payloads = [], []
    for item in group:
        item.attempts += 1
        try:
            data = load(item)
            payloads.append(None if data is None else ray.put(data))
            items.append(item)
        except Exception as exc:
            finish(ItemResult(key=item.key, name=item.name, error=f"cannot read {item.source}: {exc}",
                              error_type=type(exc).__name__, attempts=item.attempts))
    if items:
        pool.submit(items, payloads, worker=worker)
