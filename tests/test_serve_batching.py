"""Continuous batching: a lone request never waits, requests that arrive during a batch go together."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve.request_batcher import ContinuousBatcher


class Engine:
    """Records each batch; a batch blocks until the test lets it go (when ``gate`` is set up)."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def run(self, jobs: list[str]) -> list[str | Exception]:
        self.batches.append(list(jobs))
        self.started.set()
        assert self.gate.wait(30)
        return [ValueError(f"bad {j}") if j.startswith("bad") else j.upper() for j in jobs]


async def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_a_lone_request_starts_at_once_even_with_a_long_wait() -> None:
    async def main() -> None:
        engine = Engine()
        batcher = ContinuousBatcher(engine.run, max_size=8, wait_s=60.0, executor=ThreadPoolExecutor(1))
        for word in ("a", "b", "c"):  # one at a time, like a client at concurrency 1
            assert await asyncio.wait_for(batcher.submit(word), timeout=10) == word.upper()
        assert engine.batches == [["a"], ["b"], ["c"]]

    asyncio.run(main())


def test_requests_arriving_during_a_batch_go_together_up_to_the_max() -> None:
    async def main() -> None:
        engine = Engine(gated=True)
        batcher = ContinuousBatcher(engine.run, max_size=3, wait_s=0.0, executor=ThreadPoolExecutor(1))
        first = asyncio.ensure_future(batcher.submit("a"))
        await _until(engine.started.is_set)
        rest = [asyncio.ensure_future(batcher.submit(w)) for w in ("b", "c", "d", "e")]
        await asyncio.sleep(0)
        engine.gate.set()
        assert await asyncio.wait_for(asyncio.gather(first, *rest), timeout=10) == ["A", "B", "C", "D", "E"]
        assert engine.batches == [["a"], ["b", "c", "d"], ["e"]]
        assert batcher.stats.batches == 3 and batcher.stats.largest_batch == 3 and batcher.stats.items == 5

    asyncio.run(main())


def test_under_load_the_next_batch_waits_to_fill() -> None:
    async def main() -> None:
        engine = Engine(gated=True)
        batcher = ContinuousBatcher(engine.run, max_size=4, wait_s=30.0, executor=ThreadPoolExecutor(1))
        first = asyncio.ensure_future(batcher.submit("a"))
        await _until(engine.started.is_set)
        second = asyncio.ensure_future(batcher.submit("b"))  # waiting when "a" finishes: sustained load
        await asyncio.sleep(0)
        engine.gate.set()
        assert await asyncio.wait_for(first, timeout=10) == "A"
        late = [asyncio.ensure_future(batcher.submit(w)) for w in ("c", "d", "e")]
        # the batch fills to 4 and runs without waiting out the 30 s
        assert await asyncio.wait_for(asyncio.gather(second, *late), timeout=10) == ["B", "C", "D", "E"]
        assert engine.batches == [["a"], ["b", "c", "d", "e"]]

    asyncio.run(main())


def test_a_failed_job_fails_alone_and_a_broken_run_fails_its_batch() -> None:
    async def main() -> None:
        engine = Engine(gated=True)
        batcher = ContinuousBatcher(engine.run, max_size=8, wait_s=0.0, executor=ThreadPoolExecutor(1))
        first = asyncio.ensure_future(batcher.submit("a"))
        await _until(engine.started.is_set)
        good, bad = asyncio.ensure_future(batcher.submit("b")), asyncio.ensure_future(batcher.submit("bad"))
        await asyncio.sleep(0)
        engine.gate.set()
        assert await first == "A" and await good == "B"
        with pytest.raises(ValueError, match="bad bad"):
            await bad

        def broken(jobs: list[str]) -> list[str | Exception]:
            raise RuntimeError("engine gone")

        crashing = ContinuousBatcher(broken, max_size=8, wait_s=0.0, executor=ThreadPoolExecutor(1))
        with pytest.raises(RuntimeError, match="engine gone"):
            await asyncio.wait_for(crashing.submit("x"), timeout=10)
        assert await asyncio.wait_for(batcher.submit("after"), timeout=10) == "AFTER"  # still serving

    asyncio.run(main())
