"""Warm worker sets on a running cluster: a command that joins a cluster leaves its loaded Whisper workers there,
and the next command with the same settings takes them instead of starting processes and loading models again
(issue 19 item 10: on 2 cores that start-up was most of what a long-form command lost to faster-whisper direct).

A detached registry actor (:data:`REGISTRY` in namespace :data:`NAMESPACE`, zero CPUs) holds the sets. It spawns
their workers (and the split coordinator) itself, so they are its children: if it dies they go with it, and nothing
outlives it. Each set is keyed by everything a worker depends on (:func:`pool_key`: settings, resources per worker,
the environment the workers get, rayscribe's version); a command with another key never gets it. The worker count is
not in the key: a set serves a command that wants as many workers or fewer (it gets them all: they are loaded
already), and is rebuilt for one that wants more.

- A command leases a set. The first with a key builds it; the next finds it idle and reuses it (same actors,
  same processes). One that finds it leased (two commands at once) waits for it when the cluster has no room for
  its own workers, else starts private workers as before, stopped when it ends.
- A command with another key evicts every idle set first (it would hold the CPUs/GPUs the new workers need).
  A set released while another key is being built is dismissed, not kept.
- A set idle for ``warm_pool_idle_seconds`` is dismissed; so is a leased set whose command died (its lease token,
  an object the command owns, is lost). The registry ends itself once it holds nothing.
- A set whose workers were replaced during a command is dismissed on release (the replacements belong to the
  command and end with it).

``RAYSCRIBE_WARM_POOL=false`` turns this off: every command starts and stops its own workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, ObjectLostError, RayActorError

from actors.cluster import worker_env
from actors.pool.pool import WhisperPool
from actors.pool.workers import WORKER_START_TIMEOUT, PoolError, WorkerSlot, root_cause

log = logging.getLogger("rayscribe.pool")

NAMESPACE = "rayscribe"
REGISTRY = "rayscribe-warm-pools"
# Settings that only the command itself reads: two commands that differ in them can share workers.
DRIVER_ONLY = frozenset({"ray_address", "output_formats", "warm_pool", "warm_pool_idle_seconds"})
REAP_EVERY = 1.0  # seconds between the registry's checks for idle sets and dead lease holders
WAIT_STEP = 0.5  # seconds between a waiting command's tries to lease a busy set
EMPTY_GRACE = 10.0  # seconds the registry waits holding nothing before it ends itself
ATTEMPTS = 3  # tries to reach the registry (it may be ending itself just as a command finds it)


def pool_key(pool: WhisperPool, env: dict[str, str] | None = None) -> str:
    """A digest of everything the pool's workers depend on; equal keys mean interchangeable workers."""
    from rayscribe import __version__

    settings = {k: v for k, v in pool.settings.model_dump().items() if k not in DRIVER_ONLY}
    env = worker_env() if env is None else env
    parts = {"settings": settings, "num_cpus": pool.num_cpus, "num_gpus": pool.num_gpus,
             "env": {k: v for k, v in env.items() if not k.startswith("RAYSCRIBE_")}, "version": __version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class _Set:
    """One warm set, as the registry keeps it."""

    workers: list[Any]
    coordinator: Any
    lease: str | None  # the lease id of the command using it, None when idle
    holder: list[Any] = field(default_factory=list)  # [token ref] of that command (lost when it dies)
    idle_since: float = 0.0
    building: bool = True  # leased to the command that builds it, until it releases


@ray.remote(num_cpus=0, max_restarts=0)
class WarmPools:
    """The registry of warm sets (one per key). Its methods run one at a time; a thread dismisses idle sets."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self.sets: dict[str, _Set] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        threading.Thread(target=self._reap_loop, daemon=True).start()

    def lease(self, key: str, holder: list[Any], idle_seconds: float, size: int = 1) -> dict[str, Any]:
        """Lease the set for ``key`` with at least ``size`` workers: ``{"state": "reuse", workers, coordinator,
        lease}`` (idle set, now yours), ``"build"`` (none, or too small and dismissed: spawn it with :meth:`spawn`,
        yours), ``"busy"`` (another command has it)."""
        with self.lock:
            self.idle_seconds = idle_seconds  # the latest command's setting applies
            for other in [k for k, s in self.sets.items() if k != key and s.lease is None]:
                self._dismiss(other, "another command needs different workers")
            found = self.sets.get(key)
            if found is not None and found.lease is not None:
                return {"state": "busy"}
            if found is not None and len(found.workers) < size:
                self._dismiss(key, f"{len(found.workers)} worker(s), and a command wants {size}")
                found = None
            lease = uuid.uuid4().hex
            if found is not None:
                found.lease, found.holder = lease, holder
                return {"state": "reuse", "workers": found.workers, "coordinator": found.coordinator, "lease": lease}
            self.sets[key] = _Set(workers=[], coordinator=None, lease=lease, holder=holder)
            return {"state": "build", "lease": lease}

    def spawn(self, key: str, lease: str, count: int, options: dict[str, Any], settings: dict[str, Any],
              coordinator: bool) -> dict[str, Any]:
        """Start the set's workers (and coordinator) as this actor's children, so they outlive the command."""
        from actors.split import start_coordinator
        from actors.whisper_worker import WhisperWorker
        from rayscribe.config.settings import Settings

        with self.lock:
            found = self.sets.get(key)
            if found is None or found.lease != lease:
                raise PoolError("the warm pool lease was lost")
            worker: Any = WhisperWorker
            found.workers = [worker.options(**options).remote(settings) for _ in range(count)]
            if coordinator:
                found.coordinator = start_coordinator(Settings(**settings))
            return {"workers": found.workers, "coordinator": found.coordinator}

    def release(self, key: str, lease: str, workers: list[str], keep: bool) -> bool:
        """The command is done: keep the set warm if its workers (actor ids) are all the set's own and ``keep``,
        else dismiss it. Returns whether it was kept."""
        with self.lock:
            found = self.sets.get(key)
            if found is None or found.lease != lease:
                return False
            own = sorted(w._actor_id.hex() for w in found.workers)
            building = [k for k, s in self.sets.items() if k != key and s.building]
            if not keep or sorted(workers) != own or not own:
                self._dismiss(key, "its workers changed or the command failed")
                return False
            if building:
                self._dismiss(key, "another command is starting different workers")
                return False
            found.lease, found.holder, found.building = None, [], False
            found.idle_since = time.monotonic()
            return True

    def dismiss_all(self) -> int:
        """Dismiss every idle set (workers elsewhere need their resources); returns how many."""
        with self.lock:
            idle = [k for k, s in self.sets.items() if s.lease is None]
            for key in idle:
                self._dismiss(key, "asked to")
            return len(idle)

    def describe(self) -> list[dict[str, Any]]:
        """The sets held now: key, leased or idle (and for how long), worker actor ids and handles."""
        with self.lock:
            now = time.monotonic()
            return [{"key": k, "leased": s.lease is not None, "idle_seconds": 0.0 if s.lease else now - s.idle_since,
                     "workers": [w._actor_id.hex() for w in s.workers], "handles": list(s.workers)}
                    for k, s in self.sets.items()]

    def _dismiss(self, key: str, why: str) -> None:
        found = self.sets.pop(key)
        for handle in [*found.workers, found.coordinator]:
            if handle is not None:
                ray.kill(handle, no_restart=True)
        log.info("warm pool %s dismissed (%d workers): %s", key, len(found.workers), why)

    def _holder_gone(self, found: _Set) -> bool:
        if not found.holder:
            return False
        try:
            ray.get(found.holder[0], timeout=0.2)
        except ObjectLostError:  # OwnerDiedError among them: the command's process is gone
            return True
        except Exception:  # slow or unreadable: take it for alive, look again later
            return False
        return False

    def _reap_loop(self) -> None:
        empty_since = time.monotonic()
        while not self.stopped.wait(REAP_EVERY):
            with self.lock:
                now = time.monotonic()
                for key, found in list(self.sets.items()):
                    if found.lease is None and now - found.idle_since >= self.idle_seconds:
                        self._dismiss(key, f"idle for {self.idle_seconds:.0f} s")
                    elif found.lease is not None and self._holder_gone(found):
                        self._dismiss(key, "the command using it ended without releasing it")
                if self.sets:
                    empty_since = now
                elif now - empty_since >= EMPTY_GRACE:
                    self.stopped.set()
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)  # nothing held: end, take nothing


def registry(idle_seconds: float, create: bool = True) -> Any:
    """The cluster's registry actor (created detached when missing and ``create``), or None."""
    if not create:
        try:
            return ray.get_actor(REGISTRY, namespace=NAMESPACE)
        except ValueError:
            return None
    actor: Any = WarmPools
    return actor.options(name=REGISTRY, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
        idle_seconds)


def release_idle_sets(pool: WhisperPool) -> None:
    """Dismiss idle warm sets before workers that are not warm start (a queue worker, a server, a command whose
    set is busy) and the cluster lacks room for them: the sets would hold the CPUs/GPUs those need until their
    idle timeout. Cheap when there is no registry."""
    found = registry(0.0, create=False)
    if found is None or _room_for(pool):
        return
    try:
        count = ray.get(found.dismiss_all.remote(), timeout=30)
    except (RayActorError, GetTimeoutError):
        return
    if count:
        log.info("dismissed %d idle warm worker set(s) to make room", count)


@dataclass
class WarmLease:
    """A command's hold on a warm set; :func:`stop_pool` gives it back."""

    registry: Any
    key: str
    lease: str
    token: Any  # the object whose loss tells the registry this command died
    reused: bool


def start_pool(pool: WhisperPool,
               timeout: float | None = None) -> tuple[list[dict[str, Any]], WarmLease | None]:
    """Start ``pool`` from a warm set (reused, or built and kept after this command), or privately when warm sets
    are off or the set is in use and the cluster has room for private workers; returns the workers' identities
    and the lease (None when private)."""
    settings = pool.settings
    if timeout is None:  # GPU nodes may have to boot first (see WhisperPool.start)
        timeout = settings.gpu_wait_seconds if pool.num_gpus else WORKER_START_TIMEOUT
    if not settings.warm_pool or pool.hybrid:  # paired workers (Voxtral beside each) are never kept warm
        return pool.start(timeout), None
    key = pool_key(pool)
    token = ray.put(key)
    deadline = time.monotonic() + timeout
    waiting_logged = False
    for attempt in range(1, ATTEMPTS + 1):
        reg = registry(settings.warm_pool_idle_seconds)
        try:
            while True:
                answer = ray.get(reg.lease.remote(key, [token], settings.warm_pool_idle_seconds, pool.size),
                                 timeout=60)
                if answer["state"] != "busy":
                    break
                if _room_for(pool) or time.monotonic() > deadline:
                    log.info("the warm pool is in use by another command; starting private workers")
                    return pool.start(timeout), None
                if not waiting_logged:
                    log.warning("waiting for the warm pool, in use by another command on this cluster")
                    waiting_logged = True
                time.sleep(WAIT_STEP)  # polling interval: the registry has no way to call back
            break
        except RayActorError:  # it was ending itself (nothing held) as we found it: make a new one
            if attempt == ATTEMPTS:
                raise PoolError("cannot reach the warm pool registry; set RAYSCRIBE_WARM_POOL=false") from None
    lease = WarmLease(reg, key, answer["lease"], token, reused=answer["state"] == "reuse")
    try:
        if answer["state"] == "build":
            options = {"num_cpus": pool.num_cpus, "num_gpus": pool.num_gpus, "max_restarts": 0,
                       "max_task_retries": 0, "scheduling_strategy": "SPREAD",
                       "runtime_env": {"env_vars": worker_env()}}
            split = pool.size > 1 and settings.split_seconds > 0
            answer = ray.get(reg.spawn.remote(key, lease.lease, pool.size, options, settings.model_dump(), split),
                             timeout=60)
        infos = _adopt(pool, answer["workers"], answer["coordinator"], max(1.0, deadline - time.monotonic()))
    except BaseException:
        ray.get(reg.release.remote(key, lease.lease, [], False))
        raise
    log.info("warm pool %s %s: %d worker(s)", key, "reused" if lease.reused else "started", len(infos))
    return infos, lease


def _adopt(pool: WhisperPool, workers: list[Any], coordinator: Any, timeout: float) -> list[dict[str, Any]]:
    """Put the set's workers in the pool's slots (as :meth:`WhisperPool.start` does with its own) once each
    has loaded its model; a reused worker answers at once."""
    try:
        infos = ray.get([w.info.remote() for w in workers], timeout=timeout)
        if coordinator is not None:
            ray.get(coordinator.ready.remote(), timeout=timeout)
    except GetTimeoutError:
        raise PoolError(
            f"{len(workers)} Whisper worker(s) asking for {pool.num_cpus} CPU and {pool.num_gpus} GPU each "
            f"did not start within {timeout:.0f} s; the cluster has {ray.cluster_resources()}") from None
    except RayActorError as exc:
        raise PoolError(f"a Whisper worker could not start: {root_cause(exc)}") from None
    pool.slots = [WorkerSlot(w, info=i) for w, i in zip(workers, infos)]
    pool.size = len(workers)  # a reused set may be larger than the command asked for: its workers are loaded
    pool.coordinator = coordinator
    pool.keep_spares(at_once=True)
    return infos


def stop_pool(pool: WhisperPool, lease: WarmLease | None, ok: bool = True) -> None:
    """End the command's use of the pool: give a warm set back (kept when ``ok`` and its workers are unchanged),
    and stop every worker that is the command's own (private workers, standbys, replacements)."""
    if lease is None:
        pool.stop()
        return
    held = [slot.handle._actor_id.hex() for slot in pool.slots]
    try:
        kept = ray.get(lease.registry.release.remote(lease.key, lease.lease, held, ok), timeout=60)
    except (RayActorError, GetTimeoutError) as exc:
        log.warning("could not give the warm pool back: %s", root_cause(exc))
        kept = False
    if kept:  # the set's workers stay; stop only what the command started itself
        pool.slots, pool.coordinator = [], None
    pool.stop()


def _room_for(pool: WhisperPool) -> bool:
    """Whether the cluster has free resources for the pool's workers now (then waiting makes no sense)."""
    free = ray.available_resources()
    return (free.get("CPU", 0.0) >= pool.num_cpus * pool.size
            and free.get("GPU", 0.0) >= pool.num_gpus * pool.size)
