"""The queue-driven autoscaling policy as an actor: SQS depth in, ``request_resources`` and a worker count out.

Every ``RAYSCRIBE_SCALING_POLL_INTERVAL`` seconds it reads both job queues' approximate visible and in-flight
counts (and the dead-letter queue's, for the dashboard), lets :class:`rayscribe.cluster.scaling.ScalingPolicy` decide,
asks Ray's autoscaler for one ``{"GPU": gpu_per_worker, "CPU": cpus_per_worker}`` bundle per desired Whisper worker
(``ray.autoscaler.sdk.request_resources``: new GPU nodes start at once, and the request keeps them while it stands)
and logs the decision with its inputs as one JSON line. The ingest loop asks :meth:`AutoscalerActor.desired_workers`
between jobs and grows its pool onto the new GPUs, or stops idle workers; finished jobs come back through
:meth:`AutoscalerActor.observe` so the policy learns the real speed. With the queues empty for the idle timeout it
asks for ``min_gpus`` (0 by default); Ray's autoscaler then ends the idle nodes after its ``idle_timeout_minutes``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

import ray
from ray.autoscaler.sdk import request_resources
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import metrics
from actors.cluster import cluster_gpus, worker_env
from actors.pool import PoolError, WhisperPool
from rayscribe.cluster.scaling import Decision, QueueCounts, ScalingPolicy, resource_bundles
from rayscribe.config.queue import QueueSettings
from rayscribe.config.scaling import ScalingSettings
from rayscribe.config.settings import Settings
from rayscribe.queue.sqs import JobQueue, QueueError

log = logging.getLogger("rayscribe.autoscaler")

HISTORY = 500  # decisions kept for `decisions()`


@ray.remote(num_cpus=0, max_concurrency=4)  # type: ignore[call-overload]
class AutoscalerActor:
    """Polls the queues on its own thread from creation until :meth:`stop`."""

    def __init__(self, settings: dict[str, Any], queue_settings: dict[str, Any],
                 scaling_settings: dict[str, Any]) -> None:
        from rayscribe.logs import configure_logging

        self.settings = Settings(**settings)
        self.scaling = ScalingSettings(**scaling_settings)
        configure_logging(self.settings.log_level)
        self.queue = JobQueue(QueueSettings(**queue_settings))
        self.policy = ScalingPolicy(self.scaling, self.settings.gpu_per_worker)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.latest: Decision | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rayscribe-autoscaler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # never let one bad poll end the policy
                log.exception("autoscaling poll failed; trying again next interval")
            self._stop.wait(self.scaling.scaling_poll_interval)

    def _counts(self) -> QueueCounts | None:
        try:
            main, high = self.queue.counts("normal"), self.queue.counts("high")
        except QueueError as exc:
            log.warning("cannot read the queue depth (%s); keeping the last decision", exc)
            return None
        metrics.queue_messages("main", main["visible"], main["in_flight"])
        metrics.queue_messages("high", high["visible"], high["in_flight"])
        try:
            dlq = self.queue.counts("dlq")
            metrics.queue_messages("dlq", dlq["visible"], dlq["in_flight"])
        except QueueError as exc:
            log.debug("cannot read the dead-letter queue's depth: %s", exc)
        return QueueCounts(main_visible=main["visible"], main_inflight=main["in_flight"],
                           high_visible=high["visible"], high_inflight=high["in_flight"])

    def tick(self) -> dict[str, Any] | None:
        """One poll: read the queues, decide, request resources, log. Returns the decision (for tests)."""
        counts = self._counts()
        if counts is None:
            return None
        actual = cluster_gpus()
        with self._lock:  # decisions and their log in the order they were taken (tick may run on two threads)
            decision = self.policy.step(counts, now=time.monotonic(), actual_gpus=actual)
            self.latest = decision
            record = {**decision.to_dict(), "wall_time": time.time()}
            self.history.append(record)
        request_resources(bundles=resource_bundles(decision.desired_workers, self.settings.gpu_per_worker,
                                                   self.settings.cpus_per_worker))
        metrics.gpus(decision.desired_gpus, actual)
        log.info("autoscaling decision: %s", json.dumps(record, default=str))
        return record

    def desired_workers(self) -> int | None:
        """How many Whisper workers the pool should run (None before the first poll)."""
        with self._lock:
            return None if self.latest is None else self.latest.desired_workers

    def observe(self, audio_seconds: float, processing_seconds: float) -> None:
        """A finished job, to learn the per-GPU speed and the mean job length."""
        with self._lock:
            self.policy.observe(audio_seconds, processing_seconds)

    def decisions(self) -> list[dict[str, Any]]:
        return list(self.history)

    def stop(self) -> None:
        """Stop polling and withdraw the resource request, so the cluster can let its GPU nodes go."""
        self._stop.set()
        self._thread.join(timeout=30)
        request_resources(bundles=[])
        log.info("autoscaling stopped; resource request withdrawn")


def start_autoscaler(settings: Settings, queue_settings: QueueSettings, scaling: ScalingSettings) -> Any:
    """Start the policy on this process's node (the head, where the driver runs), not on a GPU node it may
    later let go, with this process's AWS and RAYSCRIBE variables (a cluster started elsewhere lacks them)."""
    if settings.gpu_per_worker <= 0 or settings.device == "cpu":
        raise PoolError("autoscaling adds GPU nodes for GPU workers: set RAYSCRIBE_GPU_PER_WORKER above 0 and "
                        f"RAYSCRIBE_DEVICE to auto or cuda (now {settings.gpu_per_worker:g} and {settings.device})")
    node = ray.get_runtime_context().get_node_id()
    actor: Any = AutoscalerActor
    return actor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
                         runtime_env={"env_vars": worker_env()}).remote(
        settings.model_dump(), queue_settings.model_dump(), scaling.model_dump())


def autoscaled_pool(settings: Settings) -> WhisperPool:
    """An empty Whisper pool whose workers ask for ``gpu_per_worker`` GPU even while the cluster has none yet
    (the autoscaler adds GPU nodes for them); the ingest loop grows it as the policy asks."""
    pool = WhisperPool(settings.model_copy(update={"device": "auto"}), workers=1)
    pool.settings = settings
    pool.num_gpus = settings.gpu_per_worker
    pool.size = 0
    return pool
