"""Where the pool's workers go and how many it starts: the pool's one place for GPU demand and pairing.

- :func:`plan_pool` decides, from the cluster's capacity (GPUs up now and the node types the autoscaler may launch,
  :func:`actors.cluster.cluster_capacity`), whether workers ask for GPUs, how many to start (bounded by the work),
  and whether each is paired with a Voxtral worker on its GPU (the hybrid: Voxtral enabled on GPUs).
- :class:`Placement` starts workers accordingly (spread over nodes, or each pair in a STRICT_PACK placement group
  of its own, :mod:`actors.hybrid`'s bundles) and stops them with their partners and groups.
- :func:`await_placed` waits for them, with a progress line while GPU nodes come and an error naming what is
  missing after ``RAYSCRIBE_GPU_WAIT_SECONDS``.

On GPU nodes without CUDA (Ray's fake autoscaler in tests, ``--num-gpus`` on a CPU machine) a worker still holds
its GPU share while its engine, with ``RAYSCRIBE_DEVICE=auto``, finds no CUDA device and computes on CPU.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.cluster import cluster_capacity
from actors.pool.workers import PoolError
from actors.whisper_worker import WhisperWorker
from rayscribe.config.settings import Settings
from rayscribe.config.voxtral import VoxtralSettings
from rayscribe.gpu_demand import ClusterCapacity, GpuUnavailableError, bounded_workers, gpu_slots, wants_gpu

log = logging.getLogger("rayscribe.pool")

PROGRESS_SECONDS = 10.0  # while workers wait for GPU nodes, a progress line this often


@dataclass
class PoolPlan:
    """What the pool starts: ``size`` workers of ``num_cpus`` CPU and ``num_gpus`` GPU each, or, with ``hybrid``
    (the bundles: Whisper's, Voxtral's), that many Whisper + Voxtral pairs."""

    size: int
    num_cpus: float
    num_gpus: float
    capacity: ClusterCapacity
    hybrid: list[dict[str, float]] = field(default_factory=list)
    voxtral: VoxtralSettings | None = None

    def share(self) -> str:
        if self.hybrid:
            return f"a Whisper + Voxtral pair asking {self.hybrid} (STRICT_PACK: one node, one GPU)"
        return f"{self.num_cpus:g} CPU and {self.num_gpus:g} GPU"


def plan_pool(settings: Settings, workers: int | None, work: int | None,
              voxtral: VoxtralSettings | None) -> PoolPlan:
    """Decide GPU or CPU, pairing, and the worker count (see the module's docstring)."""
    capacity = cluster_capacity(settings.autoscaling_config)
    try:
        use_gpu = wants_gpu(settings.device, settings.gpu_nodes, capacity, settings.gpu_per_worker)
    except GpuUnavailableError as exc:
        raise PoolError(str(exc)) from None
    fixed = workers or settings.workers
    num_cpus = settings.cpus_per_worker
    hybrid: list[dict[str, float]] = []
    pair_with = voxtral if voxtral is not None and voxtral.voxtral_enabled and use_gpu else None
    demand = {"CPU": num_cpus, "GPU": settings.gpu_per_worker}
    if pair_with is not None:
        from actors.hybrid import hybrid_bundles, pair_demand

        hybrid = hybrid_bundles(pair_with, use_gpu=True)
        demand = pair_demand(hybrid)
        num_cpus = hybrid[0]["CPU"]
    slots = gpu_slots(capacity, demand, settings.gpu_nodes) if use_gpu else 0
    if use_gpu and slots == 0 and not fixed:
        if settings.device == "cuda" or hybrid:  # nothing waits for a share that can never come
            what = "a Whisper + Voxtral pair (STRICT_PACK, one GPU)" if hybrid else "a Whisper worker"
            raise PoolError(f"no GPU node, up or launchable, has room for {what} asking {demand}; "
                            f"{capacity.describe()}. Lower RAYSCRIBE_HYBRID_* or RAYSCRIBE_GPU_PER_WORKER and "
                            "RAYSCRIBE_CPUS_PER_WORKER, or set RAYSCRIBE_WORKERS")
        use_gpu = False  # auto: no GPU node can hold a worker; CPU, as on a cluster without GPUs
    num_gpus = (hybrid[0].get("GPU", 0.0) if hybrid else settings.gpu_per_worker) if use_gpu else 0.0
    count = fixed or (bounded_workers(slots, work) if use_gpu else int(capacity.cpus_now / num_cpus))
    if use_gpu and capacity.gpus_now == 0:
        log.info("no GPU is up yet; %d worker(s) ask for GPU nodes (%s)", count, capacity.describe())
    return PoolPlan(size=max(1, count), num_cpus=num_cpus, num_gpus=num_gpus, capacity=capacity, hybrid=hybrid,
                    voxtral=pair_with)


class Placement:
    """Starts and stops the pool's worker actors as ``plan`` says, keeping each worker's Voxtral partner and
    placement group when pairing."""

    def __init__(self, plan: PoolPlan, settings: Settings) -> None:
        self.plan = plan
        self.settings = settings
        self._pairs: dict[int, tuple[Any, Any]] = {}  # id(whisper handle) -> (placement group, Voxtral partner)

    def spawn(self) -> Any:
        """A new worker actor, spread over the nodes that have room: losing a node then takes as few workers as
        it can, and standbys on the other nodes can replace them. When pairing, the worker and its Voxtral
        partner go into a placement group of their own (STRICT_PACK: one node, one GPU)."""
        if self.plan.hybrid:
            from actors.hybrid import reserve_pair, start_in_bundle
            from actors.voxtral_worker import VoxtralWorker

            assert self.plan.voxtral is not None
            bundles = self.plan.hybrid
            pg = reserve_pair(bundles)
            partner = start_in_bundle(VoxtralWorker, pg, 1, bundles[1], self.plan.voxtral.model_dump())
            handle = start_in_bundle(WhisperWorker, pg, 0, bundles[0], self.settings.model_dump())
            self._pairs[id(handle)] = (pg, partner)
            return handle
        worker: Any = WhisperWorker
        return worker.options(
            num_cpus=self.plan.num_cpus, num_gpus=self.plan.num_gpus, max_restarts=0, max_task_retries=0,
            scheduling_strategy="SPREAD",
        ).remote(self.settings.model_dump())

    def partner(self, handle: Any) -> Any:
        pair = self._pairs.get(id(handle))
        return pair[1] if pair is not None else None

    def partner_info(self, handle: Any) -> Any:
        """The ref of the partner's ``info`` (answers once its model is loaded), or None."""
        partner = self.partner(handle)
        return partner.info.remote() if partner is not None else None

    def kill(self, handle: Any) -> None:
        """Stop a worker, and its Voxtral partner and placement group when it has them."""
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
        pair = self._pairs.pop(id(handle), None)
        if pair is not None:
            _drop_pair(*pair)

    def kill_all(self) -> None:
        """Stop the partners and groups left (those of workers the pool already stopped)."""
        for pg, partner in list(self._pairs.values()):
            _drop_pair(pg, partner)
        self._pairs.clear()


def _drop_pair(pg: Any, partner: Any) -> None:
    from ray.util.placement_group import remove_placement_group

    with contextlib.suppress(Exception):
        ray.kill(partner, no_restart=True)
    with contextlib.suppress(Exception):
        remove_placement_group(pg)


def await_placed(refs: list[Any], partners: list[Any], timeout: float, plan: PoolPlan) -> None:
    """Wait until every worker (and partner) has answered or failed; while GPU shares are missing, say so every
    ``PROGRESS_SECONDS``; past ``timeout``, fail naming what is missing."""
    every = refs + partners
    started = time.monotonic()
    while True:
        left = timeout - (time.monotonic() - started)
        ready, pending = ray.wait(every, num_returns=len(every), timeout=max(0.0, min(PROGRESS_SECONDS, left)))
        if not pending:
            return
        waited = time.monotonic() - started
        placed = sum(1 for ref in refs if ref in ready)
        if waited >= timeout:
            what = "GPU nodes" if plan.num_gpus else "room"
            raise PoolError(
                f"only {placed} of {len(refs)} Whisper worker(s) started within {timeout:.0f} s "
                f"(RAYSCRIBE_GPU_WAIT_SECONDS): no {what} came for the other {len(refs) - placed}, each asking "
                f"{plan.share()}; {plan.capacity.describe()}; free now: {ray.available_resources()}. Check the "
                "autoscaler (`ray status`, its monitor.log), or lower RAYSCRIBE_WORKERS")
        if plan.num_gpus:
            log.warning("waiting for GPU nodes: %d of %d Whisper worker(s) up after %.0f s (each asks %s; %s)",
                        placed, len(refs), waited, plan.share(), plan.capacity.describe())
