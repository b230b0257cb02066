"""The queue worker's health (``GET /health`` on ``RAYSCRIBE_HEALTH_PORT``), in the contract of :mod:`rayscribe.health`.

It looks at the worker's own pieces as :func:`jobs.worker.run_worker` builds them: the ingest loop (running, or
starting / stopped), the Whisper pool (each worker asked whether it is alive, on the thread the pool's own probes
use, so a busy worker answers too; a dead one answers at once with an error), the Voxtral analyzer, the jobs done
and failed, and the queue depths the gauges read. A killed worker is seen at the next request, before the pool
notices it (the pool replaces dead workers only when it sends them work).
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import RayActorError

from actors.cluster import cluster_gpus
from actors.queue_gauges import QueueGauges
from rayscribe.config.settings import Settings
from rayscribe.health import Observation, VoxtralState, iso_time, report

PROBE_TIMEOUT = 3.0  # seconds a health request waits for the workers' answers (a silent one counts as down)


class WorkerHealth:
    """What the health endpoint reports; :func:`run_worker` hands it the pool, loop and analyzer as they appear."""

    def __init__(self, settings: Settings, *, voxtral_enabled: bool, gauges: QueueGauges | None = None) -> None:
        self.settings = settings
        self.voxtral_enabled = voxtral_enabled
        self.gauges = gauges
        self.started = time.time()
        self.pool: Any = None
        self.loop: Any = None
        self.analyzer: Any = None
        self.analyzer_error: str | None = None
        self.analyzer_started = False
        self.finished = False  # the loop has returned or raised: nothing takes work any more

    def _workers_up(self) -> tuple[int, list[dict[str, Any]]]:
        """The pool's size, and each of its workers (pid, node, up: ready and answering a liveness call)."""
        pool = self.pool
        if pool is None:
            return self.settings.workers, []
        slots = list(pool.slots)
        refs: dict[Any, int] = {}
        for i, slot in enumerate(slots):
            if slot.ready:
                try:
                    refs[slot.handle.alive.remote()] = i
                except Exception:  # a handle that cannot even be called is down
                    continue
        up: set[int] = set()
        if refs:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT)
            for ref in ready:
                try:
                    ray.get(ref, timeout=0)
                except Exception:  # dead: RayActorError, ActorUnavailableError, ...
                    continue
                up.add(refs[ref])
        workers = [{"pid": slot.info.get("pid"), "node_id": slot.info.get("node_id"), "up": i in up}
                   for i, slot in enumerate(slots)]
        return int(pool.size), workers

    def _voxtral(self) -> VoxtralState:
        if not self.voxtral_enabled:
            return "off"
        analyzer = self.analyzer
        pool = self.pool
        if analyzer is None and pool is not None and getattr(pool, "hybrid", False):
            # paired on GPUs: each worker's Voxtral partner shares its GPU; the first one up stands for them
            partners = [pool.partner(slot) for slot in list(pool.slots) if slot.ready]
            analyzer = next((p for p in partners if p is not None), None)
            if analyzer is None:
                return "starting"
        if analyzer is None:
            return "failed" if self.analyzer_started else "starting"
        ref = analyzer.info.remote()
        ready, _ = ray.wait([ref], timeout=PROBE_TIMEOUT)
        if not ready:
            return "ready"  # busy with an analysis (one call at a time): alive
        try:
            ray.get(ref, timeout=0)
        except RayActorError:
            return "failed"
        return "ready"

    def _running(self) -> bool:
        loop = self.loop
        return loop is not None and not self.finished and loop.running()

    def __call__(self) -> dict[str, Any]:
        """The health JSON (see :func:`rayscribe.health.report`)."""
        wanted, workers = self._workers_up()
        seen = Observation(running=self._running(), workers_wanted=wanted,
                           workers_up=sum(1 for w in workers if w["up"]), voxtral=self._voxtral())
        engine = self.pool.engine() if self.pool is not None and self.pool.slots else {}
        outcomes = list(self.loop.report.outcomes) if self.loop is not None else []
        finished = [o for o in outcomes if o.status in ("done", "failed")]
        try:
            gpus = cluster_gpus()
        except Exception:
            gpus = 0.0
        extra: dict[str, Any] = {
            "models": [self.settings.model],
            "engine": engine,
            "jobs_done": sum(1 for o in finished if o.status == "done"),
            "jobs_failed": sum(1 for o in finished if o.status == "failed"),
            "last_job_finished": iso_time(max((o.at for o in finished), default=None)),
            "voxtral_error": self.analyzer_error if seen.voxtral == "failed" else None,
            "worker_processes": workers,
        }
        if self.gauges is not None:
            extra["queues"] = dict(self.gauges.latest)
        return report(seen, mode="worker", started=self.started, gpu_available=gpus > 0 or engine.get("device") ==
                      "cuda", **extra)
