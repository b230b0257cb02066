"""The one owner of the Whisper workers: it spawns, probes, replaces and chooses them, and keeps standbys.

Both ways in that need workers use the same non-blocking interface: :meth:`WhisperPool.free_worker` says which
worker should get work next (least audio left), :meth:`WhisperPool.submit` sends it a group of files (a long file
goes to the split coordinator, which spreads its pieces over every worker), and :meth:`WhisperPool.poll` waits a
bounded time and hands back :class:`Completion`\\ s. The batch path (:mod:`actors.pool.batch_runner`) and the queue
path (:mod:`actors.ingest`) only decide what to send and what to do with what comes back.

A worker that dies, or stops answering its liveness probe (a frozen process, a lost node), is replaced without
waiting: by a warm standby at once where ``spare_workers`` keeps some, else by a new worker that gets work once it
has loaded its model. Its calls come back as failed completions with ``worker_lost`` set; the caller decides whether
to run them again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

from actors.pool.placement import Placement, await_placed, plan_pool
from actors.pool.workers import (
    ARRIVAL_CHECK,
    WORKER_START_TIMEOUT,
    Completion,
    PoolError,
    Ticket,
    WorkerSlot,
    root_cause,
)
from actors.split import should_split, start_coordinator
from rayscribe.config.settings import Settings
from rayscribe.config.voxtral import VoxtralSettings
from rayscribe.engines import TranscribeOptions
from rayscribe.scheduling import WorkerLoad, soonest_free
from rayscribe.work import ItemResult, WorkItem

log = logging.getLogger("rayscribe.pool")


class WhisperPool:
    """Whisper worker actors on the current Ray cluster."""

    def __init__(self, settings: Settings, workers: int | None = None, *, work: int | None = None,
                 voxtral: VoxtralSettings | None = None) -> None:
        """``workers``: how many (default ``RAYSCRIBE_WORKERS``, else as many as the cluster holds at its largest,
        GPU nodes the autoscaler may launch included, and never more than ``work``: the files, pieces or jobs
        to run). ``voxtral`` with Voxtral enabled on GPUs: each worker comes with a Voxtral partner on the same
        GPU (see :meth:`partner`)."""
        self.settings = settings
        self.plan = plan_pool(settings, workers, work, voxtral)
        self.placement = Placement(self.plan, settings)
        self.num_cpus, self.num_gpus, self.size = self.plan.num_cpus, self.plan.num_gpus, self.plan.size
        self.slots: list[WorkerSlot] = []
        self.replaced = 0
        self.starting: list[tuple[Any, Any]] = []  # (handle, info ref) of workers added by grow(), still loading
        self.coordinator: Any = None  # the split coordinator, once there is more than one worker to split over
        self.spares: list[tuple[Any, Any]] = []  # (handle, info ref) of warm standby workers
        self.speed: float | None = None  # audio seconds per second a worker call has shown (recent mean)
        self._tickets: dict[Any, Ticket] = {}  # calls out: result ref -> ticket
        self._replacing: dict[Any, tuple[WorkerSlot, Any, float]] = {}  # info ref -> slot, handle, since
        self._probes: dict[Any, tuple[WorkerSlot, Any, float]] = {}  # liveness probes out: ref -> slot, handle, sent
        self._next_probe = 0.0

    # -- starting and stopping ----------------------------------------------------------------------------

    def _spawn(self) -> Any:
        """A new worker actor (see :meth:`Placement.spawn`: spread over the nodes, or paired with Voxtral)."""
        return self.placement.spawn()

    def partner(self, slot: WorkerSlot) -> Any:
        """The Voxtral worker on the same GPU as ``slot``'s worker, or None when not pairing."""
        return self.placement.partner(slot.handle)

    @property
    def hybrid(self) -> bool:
        """Whether each worker comes with a Voxtral partner on its GPU."""
        return bool(self.plan.hybrid)

    def _kill(self, handle: Any) -> None:
        self.placement.kill(handle)

    def start(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Start the workers and wait until each has loaded its model. Workers that ask for GPUs may wait for
        the autoscaler to start GPU nodes: a progress line every ``PROGRESS_SECONDS``, and after
        ``RAYSCRIBE_GPU_WAIT_SECONDS`` an error that says what is missing."""
        from actors.pool.warm import release_idle_sets  # idle warm workers would hold the resources these need

        if timeout is None:
            timeout = self.settings.gpu_wait_seconds if self.num_gpus else WORKER_START_TIMEOUT
        release_idle_sets(self)
        handles = [self._spawn() for _ in range(self.size)]
        if self.size > 1 and self.settings.split_seconds > 0 and self.coordinator is None:
            self.coordinator = start_coordinator(self.settings)
        refs = [h.info.remote() for h in handles]
        partners = [ref for ref in (self.placement.partner_info(h) for h in handles) if ref is not None]
        try:
            await_placed(refs, partners, timeout, self.plan)
            infos = ray.get(refs)
            if partners:
                ray.get(partners)
            if self.coordinator is not None:
                ray.get(self.coordinator.ready.remote(), timeout=timeout)
        except (GetTimeoutError, RayActorError, PoolError) as exc:
            for handle in handles:
                self._kill(handle)
            if isinstance(exc, PoolError):
                raise
            if isinstance(exc, RayActorError):
                raise PoolError(f"a Whisper worker could not start: {root_cause(exc)}") from None
            raise PoolError(
                f"{self.size} Whisper worker(s) asking for {self.num_cpus} CPU and {self.num_gpus} GPU each "
                f"did not start within {timeout:.0f} s; the cluster has {ray.cluster_resources()}"
            ) from None
        self.slots = [WorkerSlot(h, info=i) for h, i in zip(handles, infos)]
        for info, partner in zip(infos, ray.get(partners) if partners else []):
            log.info("hybrid pair: Whisper pid=%s and Voxtral pid=%s on node %s, GPU %s / %s", info["pid"],
                     partner["pid"], info["node_id"][:12], ",".join(info["gpu_ids"]), ",".join(partner["gpu_ids"]))
        self.keep_spares(at_once=True)
        first = infos[0]
        log.info("pool ready: %d worker(s), %s on %s/%s", self.size, first["model"], first["device"],
                 first["compute_type"])
        return infos

    def stop(self) -> None:
        for slot in self.slots:
            self._kill(slot.handle)
        self.slots = []
        for handle, _ in self.starting + self.spares:
            self._kill(handle)
        self.placement.kill_all()
        self.starting, self.spares = [], []
        self._tickets.clear()
        self._replacing.clear()
        self._probes.clear()
        if self.coordinator is not None:
            ray.kill(self.coordinator, no_restart=True)
            self.coordinator = None

    def workers(self) -> list[Any]:
        return [s.handle for s in self.slots]

    def ready_workers(self) -> int:
        """Workers that take work now (a replacement still loading its model does not)."""
        return sum(1 for s in self.slots if s.ready)

    def engine(self) -> dict[str, Any]:
        """What the workers run (backend, model, device, compute type), from the first that answered."""
        info = self.slots[0].info if self.slots else {}
        return {k: info.get(k) for k in ("backend", "model", "device", "compute_type")} if info else {}

    def packs_files(self) -> bool:
        """Whether the workers' engine gains from several files in one call (shared model batches)."""
        return bool(self.slots and self.slots[0].info.get("batches_across_files"))

    # -- standbys -----------------------------------------------------------------------------------------

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
                log.warning("a standby Whisper worker died: %s", root_cause(exc))
        taken: tuple[Any, dict[str, Any]] | None = None
        if started:  # one on another node if any (False < True)
            handle, ref, info = min(started, key=lambda spare: spare[2].get("node_id") == avoid_node)
            self.spares.remove((handle, ref))
            taken = handle, info
        self.keep_spares()
        return taken

    # -- replacing ----------------------------------------------------------------------------------------

    def count_replacement(self) -> None:
        """One more dead worker replaced; a pool whose workers keep dying stops with an error."""
        self.replaced += 1
        if self.replaced > 4 * self.size + 4:
            raise PoolError(f"Whisper workers keep dying ({self.replaced - 1} replaced); giving up")

    def replace(self, slot: WorkerSlot, why: str = "") -> None:
        """Put a standby worker in a dead one's slot, or start a fresh one without waiting for it: the caller keeps
        serving the other workers meanwhile (a lost node takes several at once, and waiting for each replacement in
        turn would stall them all), and the slot gets work again once the new worker answers."""
        self.count_replacement()
        slot.inflight = 0
        self._kill(slot.handle)  # unavailable may mean unreachable, not dead: make sure it is gone (and its pair)
        why = why or f"worker pid={slot.info.get('pid')} died"
        node = slot.info.get("node_id")
        spare = self.take_spare(avoid_node=node)
        if spare is not None:
            log.warning("%s; a standby worker (pid=%s) takes its place", why, spare[1].get("pid"))
            slot.handle, slot.info = spare
            # One on the same node may have gone with it (a lost node takes its standbys too): it gets work once
            # it answers, and is replaced in turn if it does not.
            slot.ready = spare[1].get("node_id") != node
            if not slot.ready:
                self._replacing[slot.handle.info.remote()] = (slot, slot.handle, time.monotonic())
            return
        log.warning("%s; starting a replacement", why)
        slot.handle = self._spawn()
        slot.ready = False
        self._replacing[slot.handle.info.remote()] = (slot, slot.handle, time.monotonic())

    def _collect_replacements(self, ready: list[Any]) -> None:
        """Replacements that answered take work; one that died while starting is replaced in turn, and one that
        never starts stops the pool with the reason."""
        for ref in ready:
            if ref not in self._replacing:
                continue
            slot, handle, _ = self._replacing.pop(ref)
            try:
                info = ray.get(ref)
            except RayActorError as exc:  # it was sent no work yet: replace it from here
                log.warning("a replacement worker died while starting: %s", root_cause(exc))
                if slot.handle is handle and slot in self.slots:
                    self.replace(slot)
                continue
            if slot.handle is handle:
                slot.info, slot.ready = info, True
        for _, _, since in self._replacing.values():
            if time.monotonic() - since > WORKER_START_TIMEOUT:
                raise PoolError(f"a replacement Whisper worker did not start within {WORKER_START_TIMEOUT:.0f} s")

    # -- liveness -----------------------------------------------------------------------------------------

    def _probe(self) -> list[Completion]:
        """Ask each worker with work whether it is alive (a call it answers on its own thread while a job runs), and
        take one silent for ``worker_probe_seconds`` for lost: a frozen process, or a node gone, which Ray reports
        only after its health checks fail (many seconds) or, for a frozen process, never. Its calls come back as
        lost, and it is replaced."""
        limit = self.settings.worker_probe_seconds
        if limit <= 0:
            return []
        if self._probes:
            refs = list(self._probes)
            for ref in ray.wait(refs, num_returns=len(refs), timeout=0)[0]:
                del self._probes[ref]  # answered (or its worker is known dead: its calls' refs say so)
        lost: list[Completion] = []
        now = time.monotonic()
        for ref, (slot, handle, sent) in list(self._probes.items()):
            if now - sent >= limit:
                del self._probes[ref]
                if slot.handle is handle and slot in self.slots:
                    lost += self._lost_worker(slot, now - sent)
        if now >= self._next_probe:
            self._next_probe = now + limit / 4
            probing = {id(handle) for _, handle, _ in self._probes.values()}  # one probe out per worker at a time
            for slot in self.slots:
                if slot.ready and slot.inflight > 0 and id(slot.handle) not in probing:
                    self._probes[slot.handle.alive.remote()] = (slot, slot.handle, now)
        return lost

    def _lost_worker(self, slot: WorkerSlot, silent: float) -> list[Completion]:
        """Stop a worker that does not answer, give its slot to another, and hand back its calls as lost."""
        handle = slot.handle
        tickets = [t for t in self._tickets.values() if t.handle is handle and not t.split]
        for ticket in tickets:
            del self._tickets[ticket.ref]
        why = f"the worker (pid={slot.info.get('pid')}) did not answer for {silent:.1f} s"
        log.warning("%s: frozen, or its node is lost; %d call(s) of it run again elsewhere", why, len(tickets))
        self.replace(slot, why=why)
        return [Completion(t, error=why, worker_lost=True) for t in tickets]

    # -- sending work and taking results --------------------------------------------------------------------

    def free_worker(self, limit: int | None = None) -> WorkerSlot | None:
        """The worker with room (fewer than ``limit`` calls, by default ``max_inflight_per_worker``) that should be
        free soonest, or None."""
        limit = limit or self.settings.max_inflight_per_worker
        slots = [s for s in self.slots if s.ready and s.inflight < limit]
        if len(slots) < 2:
            return slots[0] if slots else None
        loads = {id(s): WorkerLoad(inflight=s.inflight) for s in slots}
        for ticket in self._tickets.values():
            load = loads.get(id(ticket.slot))
            if load is not None and ticket.handle is ticket.slot.handle and not ticket.split:
                load.audio_seconds += sum(i.duration or 0.0 for i in ticket.items)
                load.oldest_sent = min(load.oldest_sent or ticket.sent_at, ticket.sent_at)
        return slots[soonest_free([loads[id(s)] for s in slots], self.speed, time.time())]

    def submit(self, items: list[WorkItem], payloads: list[Any], options: TranscribeOptions | None = None, *,
               worker: WorkerSlot | None = None, tag: Any = None) -> Ticket:
        """Send ``items`` (``payloads``: their bytes in Ray's object store) to ``worker`` (by default the one free
        soonest); one long file goes to the split coordinator instead. Never waits."""
        slot = worker or self.free_worker()
        if slot is None:
            raise PoolError("no Whisper worker has room; ask free_worker() first")
        split = len(items) == 1 and should_split(items[0], self.settings, len(self.slots))
        ref = (self.split(items[0], payloads[0], options) if split
               else slot.handle.transcribe.remote(items, payloads, options))
        slot.inflight += 1
        ticket = Ticket(items=items, ref=ref, slot=slot, handle=slot.handle, split=split,
                        sent_at=time.time(), tag=tag)
        self._tickets[ref] = ticket
        return ticket

    @property
    def pending(self) -> int:
        """Calls sent and not yet handed back."""
        return len(self._tickets)

    def poll(self, timeout: float, interrupt: threading.Event | None = None) -> list[Completion]:
        """Keep the workers (standbys, replacements, probes), then wait up to ``timeout`` for calls to finish (cut
        short when ``interrupt`` is set, checked every few tens of ms) and hand back every call finished by then."""
        self.keep_spares()
        completions = self._probe()
        refs = list(self._tickets) + list(self._replacing)
        if refs and not completions:
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                step = min(ARRIVAL_CHECK, left) if interrupt is not None else left
                ready, _ = ray.wait(refs, num_returns=1, timeout=max(0.0, step))
                if ready or left <= step or (interrupt is not None and interrupt.is_set()):
                    break
        if refs:  # every call done by now frees its worker before the caller sends more
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            self._collect_replacements(ready)
            completions += [self._complete(self._tickets.pop(ref)) for ref in ready if ref in self._tickets]
        return completions

    def _done_on(self, ticket: Ticket) -> None:
        """One call fewer in flight on its worker, unless the worker was replaced meanwhile (which reset it)."""
        if ticket.slot.handle is ticket.handle:
            ticket.slot.inflight -= 1

    def _complete(self, ticket: Ticket) -> Completion:
        try:
            results: list[ItemResult] = ray.get(ticket.ref)
        except RayActorError as exc:
            if ticket.split:  # the coordinator died (dead workers it handles itself); Ray restarts it
                self._done_on(ticket)
                return Completion(ticket, error=f"the split coordinator died: {root_cause(exc)}", worker_lost=True,
                                  coordinator=True)
            # Only the first of the dead worker's calls replaces it: the others find a new handle in the slot (and
            # must neither replace the healthy replacement nor count against its calls).
            if ticket.slot in self.slots and ticket.slot.handle is ticket.handle:
                self.replace(ticket.slot)
            return Completion(ticket, error=f"the worker died: {root_cause(exc)}", worker_lost=True)
        except Exception as exc:  # the call itself failed (not a file error: those come back as results)
            self._done_on(ticket)
            return Completion(ticket, error=f"the worker task failed: {type(exc).__name__}: {root_cause(exc)}")
        self._done_on(ticket)
        if not ticket.split:
            audio = sum(r.audio_seconds for r in results if r.ok)
            seconds = sum(r.processing_seconds for r in results if r.ok)
            if audio > 0 and seconds > 0:
                self.speed = audio / seconds if self.speed is None else 0.8 * self.speed + 0.2 * audio / seconds
        return Completion(ticket, results=results)

    # -- long files -----------------------------------------------------------------------------------------

    def split(self, item: WorkItem, payload: Any, options: TranscribeOptions | None) -> Any:
        """Send a long file to the split coordinator (started on first use if the pool began with one worker),
        which spreads its pieces over every worker; returns the ref of its one result."""
        if self.coordinator is None:
            self.coordinator = start_coordinator(self.settings)
        return self.coordinator.transcribe.remote(item, payload, options, self.workers(),
                                                  self.settings.split_piece_seconds)

    def await_coordinator(self, timeout: float = 120.0) -> None:
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
                log.warning("the split coordinator is not back: %s", root_cause(exc))
                return

    # -- resizing (the queue-driven autoscaler) -------------------------------------------------------------

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
                self.slots.append(WorkerSlot(handle, info=ray.get(ref)))
                joined += 1
            except RayActorError as exc:
                log.warning("a new Whisper worker died while starting: %s", root_cause(exc))
        self.size = len(self.slots) + len(self.starting)
        return joined

    def shrink(self, n: int) -> int:
        """Stop up to ``n`` workers that hold no work, those still starting first; returns how many stopped."""
        stopped = 0
        while stopped < n and self.starting:
            handle, _ = self.starting.pop()
            self._kill(handle)
            stopped += 1
        for slot in [s for s in self.slots if s.inflight == 0][: max(0, n - stopped)]:
            self._kill(slot.handle)
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

    def run(self, items: Iterable[WorkItem], load: Callable[[WorkItem], bytes | None],
            on_result: Callable[[ItemResult], None] | None = None) -> list[ItemResult]:
        """The batch path: see :func:`actors.pool.batch_runner.run_items`."""
        from actors.pool.batch_runner import run_items

        return run_items(self, items, load, on_result)
