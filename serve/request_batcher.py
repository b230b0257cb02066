"""Continuous batching of concurrent requests in one model replica.

Why not ``@serve.batch``: it waits up to its timeout for every batch, so a lone request always pays the whole
wait (at concurrency 1 that wait *is* the HTTP overhead). Here a request that finds the engine idle starts at
once; requests that arrive while a batch decodes queue up and go together in the next batch. When requests
were already waiting as a batch finished (sustained load), the next batch waits up to ``wait_s`` more for the
clients just answered to send their next requests, so batches stay full under load without taxing light load.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest_batch: int = 0


class ContinuousBatcher(Generic[Job, Result]):
    """Feeds jobs to ``run`` (a blocking function of a list of jobs, run on ``executor``) in batches of at
    most ``max_size``; ``run`` returns one result per job, an ``Exception`` for a job that failed."""

    def __init__(self, run: Callable[[list[Job]], list[Result | Exception]], max_size: int, wait_s: float,
                 executor: object = None, on_batch: Callable[[int], None] | None = None) -> None:
        self._run = run
        self.max_size = max_size
        self.wait_s = wait_s
        self._executor = executor
        self._on_batch = on_batch
        self._queue: deque[tuple[Job, asyncio.Future[Result]]] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loaded = False  # requests were waiting when the last batch finished
        self.stats = BatchStats()

    async def submit(self, job: Job) -> Result:
        """The result for ``job``; raises what ``run`` returned for it if that was an exception."""
        loop = asyncio.get_running_loop()
        if self._arrived is None:
            self._arrived = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._serve())
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((job, future))
        self._arrived.set()
        return await future

    async def _fill(self) -> None:
        """Under sustained load, give the batch up to ``wait_s`` to reach ``max_size``."""
        assert self._arrived is not None
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(self._queue) < self.max_size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _serve(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            if self._loaded and self.wait_s > 0:
                await self._fill()
            batch = [self._queue.popleft() for _ in range(min(self.max_size, len(self._queue)))]
            batch = [(job, future) for job, future in batch if not future.cancelled()]
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self._run,  # type: ignore[arg-type]
                                                     [job for job, _ in batch])
            except Exception as exc:  # run itself broke: every job in the batch gets the error
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            self._loaded = bool(self._queue)
