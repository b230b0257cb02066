"""A pool of Whisper workers that keeps every worker busy with bounded in-flight work.

Short files are grouped so one worker call transcribes several of them in shared model batches. A worker that
dies is replaced (by a warm standby at once, where ``spare_workers`` keeps some) and the files it held are
retried once, each on its own, so a file that kills workers cannot take its neighbours down with it; a file that
fails twice is reported failed with the reason.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError

from actors.cluster import cluster_cpus, cluster_gpus
from actors.split import should_split, start_coordinator
from actors.whisper_worker import WhisperWorker
from rayscribe.config.settings import Settings
from rayscribe.engines import TranscribeOptions
from rayscribe.errors import RayscribeError
from rayscribe.work import ItemResult, WorkItem

log = logging.getLogger("rayscribe.pool")

MAX_ATTEMPTS = 2  # the first try and one retry
WORKER_START_TIMEOUT = 900.0  # a new GPU node may have to boot and load a model first


class PoolError(RayscribeError):
    """The pool cannot run at all (no worker could start); the message says why."""


@dataclass
class _Task:
    items: list[WorkItem]
    payloads: list[Any]
    worker: Any
    ref: Any = None
    split: bool = False  # sent to the split coordinator (which sends the pieces on to every worker)


@dataclass
class _Slot:
    handle: Any
    inflight: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    ready: bool = True  # False while a replacement worker starts in this slot (it is sent no work until then)


def plan_groups(items: list[WorkItem], settings: Settings, workers: int) -> list[list[WorkItem]]:
    """Pack short files into groups (at most ``group_seconds`` of audio each, smaller when that would leave
    workers idle); long files or files of unknown length go alone. Longest groups first."""
    short = [i for i in items if i.duration is not None and i.duration <= settings.short_file_seconds]
    alone = [[i] for i in items if i not in short]
    total = sum(i.duration or 0.0 for i in short)
    target = min(settings.group_seconds, max(30.0, total / max(1, 2 * workers)))
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


class WhisperPool:
    """Whisper worker actors on the current Ray cluster."""

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        self.settings = settings
        gpus = cluster_gpus()
        use_gpu = settings.device != "cpu" and gpus > 0 and settings.gpu_per_worker > 0
        if settings.device == "cuda" and gpus == 0:
            raise PoolError("RAYSCRIBE_DEVICE=cuda but the Ray cluster has no GPUs; use auto or cpu")
        self.num_gpus = settings.gpu_per_worker if use_gpu else 0.0
        self.num_cpus = settings.cpus_per_worker
        count = workers or settings.workers
        if not count:
            count = int(gpus / self.num_gpus) if use_gpu else int(cluster_cpus() / self.num_cpus)
        self.size = max(1, count)
        self.slots: list[_Slot] = []
        self.replaced = 0
        self.starting: list[tuple[Any, Any]] = []  # (handle, info ref) of workers added by grow(), still loading
        self.coordinator: Any = None  # the split coordinator, once there is more than one worker to split over
        self.spares: list[tuple[Any, Any]] = []  # (handle, info ref) of warm standby workers

    # -- workers --------------------------------------------------------------------------------------

    def _spawn(self) -> Any:
        """A new worker actor, spread over the nodes that have room: losing a node then takes as few workers as
        it can, and standbys on the other nodes can replace them."""
        worker: Any = WhisperWorker
        return worker.options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=0, max_task_retries=0,
            scheduling_strategy="SPREAD",
        ).remote(self.settings.model_dump())

    def start(self, timeout: float = WORKER_START_TIMEOUT) -> list[dict[str, Any]]:
        """Start the workers and wait until each has loaded its model."""
        handles = [self._spawn() for _ in range(self.size)]
        if self.size > 1 and self.settings.split_seconds > 0 and self.coordinator is None:
            self.coordinator = start_coordinator(self.settings)
        try:
            infos = ray.get([h.info.remote() for h in handles], timeout=timeout)
            if self.coordinator is not None:
                ray.get(self.coordinator.ready.remote(), timeout=timeout)
        except GetTimeoutError:
            raise PoolError(
                f"{self.size} Whisper worker(s) asking for {self.num_cpus} CPU and {self.num_gpus} GPU each "
                f"did not start within {timeout:.0f} s; the cluster has {ray.cluster_resources()}"
            ) from None
        except RayActorError as exc:
            raise PoolError(f"a Whisper worker could not start: {_root_cause(exc)}") from None
        self.slots = [_Slot(h, info=i) for h, i in zip(handles, infos)]
        self.keep_spares(at_once=True)
        first = infos[0]
        log.info("pool ready: %d worker(s), %s on %s/%s", self.size, first["model"], first["device"],
                 first["compute_type"])
        return infos

    def keep_spares(self, at_once: bool = False) -> None:
        """Start standby workers until ``spare_workers`` are kept (never waits for them): all at once at start-up,
        later (called between jobs) the next one only once the others are ready, since a burst of process starts
        and model loads would slow the workers that are running, on the machine they share."""
        while len(self.spares) < self.settings.spare_workers:
            if not at_once and self.spares_ready() < len(self.spares):
                return
            handle = self._spawn()
            self.spares.append((handle, handle.info.remote()))
            if not at_once:
                return

    def spares_ready(self) -> int:
        """How many standby workers have started and wait (never waits itself)."""
        refs = [ref for _, ref in self.spares]
        return len(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else 0

    def take_spare(self, avoid_node: str | None = None) -> tuple[Any, dict[str, Any]] | None:
        """A started standby worker and its identity, or None when none is ready (never waits); a new standby
        starts in its place. Standbys that died meanwhile (e.g. with their node) are dropped and replaced. One on
        ``avoid_node`` (a lost worker's node, which may be gone too) is taken only when no other is ready."""
        if not self.spares:
            return None
        ready, _ = ray.wait([ref for _, ref in self.spares], num_returns=len(self.spares), timeout=0)
        started: list[tuple[Any, Any, dict[str, Any]]] = []
        for handle, ref in [pair for pair in self.spares if pair[1] in ready]:
            try:
                started.append((handle, ref, ray.get(ref)))
            except RayActorError as exc:
                self.spares.remove((handle, ref))
                log.warning("a standby Whisper worker died: %s", _root_cause(exc))
        taken: tuple[Any, dict[str, Any]] | None = None
        if started:  # one on another node if any (False < True)
            handle, ref, info = min(started, key=lambda spare: spare[2].get("node_id") == avoid_node)
            self.spares.remove((handle, ref))
            taken = handle, info
        self.keep_spares()
        return taken

    def count_replacement(self) -> None:
        """One more dead worker replaced; a pool whose workers keep dying stops with an error."""
        self.replaced += 1
        if self.replaced > 4 * self.size + 4:
            raise PoolError(f"Whisper workers keep dying ({self.replaced - 1} replaced); giving up")

    def _replace(self, slot: _Slot) -> None:
        """Put a standby worker in ``slot``, or start a new one and wait for it; a replacement that dies while
        starting is replaced in turn."""
        log.warning("worker pid=%s died; starting a replacement", slot.info.get("pid"))
        slot.inflight = 0
        spare = self.take_spare()
        if spare is not None:
            self.count_replacement()
            slot.handle, slot.info = spare
            log.info("a standby worker (pid=%s) took the dead worker's place", slot.info.get("pid"))
            return
        while True:
            self.count_replacement()
            handle = self._spawn()
            try:
                info = ray.get(handle.info.remote(), timeout=WORKER_START_TIMEOUT)
            except RayActorError as exc:
                log.warning("a replacement worker died while starting: %s", _root_cause(exc))
                continue
            except GetTimeoutError:
                raise PoolError(f"a replacement Whisper worker did not start within "
                                f"{WORKER_START_TIMEOUT:.0f} s") from None
            slot.handle, slot.info = handle, info
            return

    def stop(self) -> None:
        for slot in self.slots:
            ray.kill(slot.handle, no_restart=True)
        self.slots = []
        for handle, _ in self.starting + self.spares:
            ray.kill(handle, no_restart=True)
        self.starting, self.spares = [], []
        if self.coordinator is not None:
            ray.kill(self.coordinator, no_restart=True)
            self.coordinator = None

    def workers(self) -> list[Any]:
        return [s.handle for s in self.slots]

    def split(self, item: WorkItem, payload: Any, options: TranscribeOptions | None) -> Any:
        """Send a long file to the split coordinator (started on first use if the pool began with one worker),
        which spreads its pieces over every worker; returns the ref of its one result."""
        if self.coordinator is None:
            self.coordinator = start_coordinator(self.settings)
        return self.coordinator.transcribe.remote(item, payload, options, self.workers(),
                                                  self.settings.split_piece_seconds)

    def _await_coordinator(self, timeout: float = 120.0) -> None:
        """Wait (bounded) until Ray has restarted the split coordinator; calls made while it restarts fail at
        once with "the actor is restarting", which would spend a file's retry for nothing."""
        deadline = time.monotonic() + timeout
        while self.coordinator is not None and time.monotonic() < deadline:
            try:
                ray.get(self.coordinator.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except ActorUnavailableError:
                time.sleep(0.2)  # polling interval while Ray restarts it
            except (RayActorError, GetTimeoutError) as exc:
                log.warning("the split coordinator is not back: %s", _root_cause(exc))
                return

    # -- running --------------------------------------------------------------------------------------

    def run(
        self,
        items: Iterable[WorkItem],
        load: Callable[[WorkItem], bytes],
        on_result: Callable[[ItemResult], None] | None = None,
    ) -> list[ItemResult]:
        """Transcribe ``items``; ``load`` reads an item's bytes when it is about to be sent (so memory stays
        bounded). Returns one result per item, in completion order."""
        if not self.slots:
            self.start()
        queue: deque[list[WorkItem]] = deque(plan_groups(list(items), self.settings, self.size))
        inflight: dict[Any, _Task] = {}
        results: list[ItemResult] = []

        def finish(result: ItemResult) -> None:
            results.append(result)
            if on_result is not None:
                on_result(result)

        while queue or inflight:
            self.keep_spares()
            for slot in sorted(self.slots, key=lambda s: s.inflight):
                while queue and slot.inflight < self.settings.max_inflight_per_worker:
                    task = self._submit(slot, queue.popleft(), load, finish)
                    if task is not None:
                        inflight[task.ref] = task
            if not inflight:
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1)
            task = inflight.pop(ready[0])
            owner = next((s for s in self.slots if s.handle is task.worker), None)
            try:
                for result in ray.get(task.ref):
                    finish(result)
                if owner is not None:
                    owner.inflight -= 1
            except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
                if task.split:  # the coordinator died (dead workers it handles itself); Ray restarts it
                    if owner is not None:
                        owner.inflight -= 1
                    self._await_coordinator()  # the retry goes to the restarted one, not to one still restarting
                    self._retry(task.items, f"the split coordinator died ({_root_cause(exc)})", queue, finish)
                    continue
                if owner is not None:
                    self._replace(owner)
                self._retry(task.items, f"the worker died ({_root_cause(exc)})", queue, finish)
            except Exception as exc:  # the task itself failed (not a file error: those come back as results)
                if owner is not None:
                    owner.inflight -= 1
                self._retry(task.items, _root_cause(exc), queue, finish)
        return results

    def _submit(self, slot: _Slot, group: list[WorkItem], load: Callable[[WorkItem], bytes],
                finish: Callable[[ItemResult], None]) -> _Task | None:
        items, payloads = [], []
        for item in group:
            item.attempts += 1
            try:
                payloads.append(ray.put(load(item)))
                items.append(item)
            except Exception as exc:
                finish(ItemResult(key=item.key, name=item.name, error=f"cannot read {item.source}: {exc}",
                                  error_type=type(exc).__name__, attempts=item.attempts))
        if not items:
            return None
        split = len(items) == 1 and should_split(items[0], self.settings, len(self.slots))
        ref = self.split(items[0], payloads[0], None) if split else slot.handle.transcribe.remote(items, payloads)
        slot.inflight += 1
        return _Task(items=items, payloads=payloads, worker=slot.handle, ref=ref, split=split)

    def _retry(self, items: list[WorkItem], reason: str, queue: deque[list[WorkItem]],
               finish: Callable[[ItemResult], None]) -> None:
        for item in items:
            if item.attempts >= MAX_ATTEMPTS:
                log.error("file failed after %d attempts: %s: %s", item.attempts, item.name, reason)
                finish(ItemResult(key=item.key, name=item.name, attempts=item.attempts,
                                  error=f"failed {item.attempts} times; last: {reason}",
                                  error_type="WorkerFailure"))
            else:
                log.warning("retrying %s alone: %s", item.name, reason)
                queue.appendleft([item])


    # -- resizing (the queue-driven autoscaler) ----------------------------------------------------------

    def grow(self, n: int) -> None:
        """Ask for ``n`` more workers without waiting: they wait for resources (e.g. a GPU node the autoscaler
        is starting) and load their model; :meth:`poll_started` moves the ready ones into ``slots``."""
        for _ in range(max(0, n)):
            handle = self._spawn()
            self.starting.append((handle, handle.info.remote()))
        self.size = len(self.slots) + len(self.starting)

    def poll_started(self) -> int:
        """Move workers that finished loading into ``slots`` (never blocks); returns how many joined."""
        if not self.starting:
            return 0
        ready, _ = ray.wait([ref for _, ref in self.starting], num_returns=len(self.starting), timeout=0)
        joined = 0
        for handle, ref in [pair for pair in self.starting if pair[1] in ready]:
            self.starting.remove((handle, ref))
            try:
                self.slots.append(_Slot(handle, info=ray.get(ref)))
                joined += 1
            except RayActorError as exc:
                log.warning("a new Whisper worker died while starting: %s", _root_cause(exc))
        self.size = len(self.slots) + len(self.starting)
        return joined

    def shrink(self, n: int) -> int:
        """Stop up to ``n`` workers that hold no work, those still starting first; returns how many stopped."""
        stopped = 0
        while stopped < n and self.starting:
            handle, _ = self.starting.pop()
            ray.kill(handle, no_restart=True)
            stopped += 1
        for slot in [s for s in self.slots if s.inflight == 0][: max(0, n - stopped)]:
            ray.kill(slot.handle, no_restart=True)
            self.slots.remove(slot)
            stopped += 1
        self.size = len(self.slots) + len(self.starting)
        return stopped

    def resize(self, target: int) -> int:
        """Grow or shrink (idle workers only) towards ``target`` workers; returns the change made."""
        current = len(self.slots) + len(self.starting)
        if target > current:
            self.grow(target - current)
            return target - current
        if target < current:
            return -self.shrink(current - target)
        return 0


def _root_cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or getattr(exc, "error_msg", None)
    text = str(cause or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
