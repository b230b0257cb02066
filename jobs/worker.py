"""The queue path's composition root, :func:`run_worker`: everything ``rayscribe worker`` runs, built in one place.

``rayscribe worker`` calls it in the driver (with signal handling), and :class:`IngestActor` calls it inside a
cluster, so the soak and the tests exercise the same wiring users run: the Ray session, the Whisper pool (or the
empty pool an autoscaling policy grows), the Voxtral analyzer when it is on, the ingest loop, and their teardown.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import ray

from actors.cluster import ray_session
from actors.ingest import IngestLoop
from actors.pool import WhisperPool
from actors.queue_gauges import QueueGauges
from actors.worker_health import WorkerHealth
from rayscribe.config.queue import QueueSettings
from rayscribe.config.settings import Settings
from rayscribe.errors import RayscribeError
from rayscribe.health import HealthServer
from rayscribe.queue.report import IngestReport

if TYPE_CHECKING:
    from rayscribe.config.scaling import ScalingSettings
    from rayscribe.config.voxtral import VoxtralSettings


def run_worker(
    settings: Settings,
    queue_settings: QueueSettings,
    *,
    workers: int | None = None,
    drain: bool = False,
    autoscale: ScalingSettings | None = None,
    voxtral: VoxtralSettings | None = None,
    handle_signals: bool = False,
    verbose: bool = True,
    on_pool: Callable[[WhisperPool], None] | None = None,
    on_loop: Callable[[IngestLoop], None] | None = None,
    health_port: int | None = None,
) -> IngestReport:
    """Run the ingest loop over a Whisper pool until it stops (``drain``: once both queues are empty) and return
    its report; the pool, the analyzer and the policy are stopped on the way out, whatever happens.

    Joins ``settings.ray_address``, starts an embedded cluster, or uses the Ray session already running (inside
    an actor). ``autoscale`` (the policy's settings) sizes the pool from the queue depth instead of ``workers``;
    ``voxtral`` defaults to the ``RAYSCRIBE_VOXTRAL_*`` settings. ``handle_signals`` (the driver's main thread
    only): the first SIGINT/SIGTERM lets jobs in flight finish, a second releases their leases at once.
    ``verbose=False`` keeps the actors' log lines in Ray's log files. ``on_pool`` and ``on_loop`` are handed the
    pool and the loop as soon as they exist (for :class:`IngestActor`'s status methods). ``health_port`` (not
    None or 0) serves ``GET /health`` (:mod:`actors.worker_health`) from this process while it runs. Without
    ``autoscale`` a thread exports the queue depth gauges (the policy does it otherwise)."""
    from actors.voxtral_worker import start_analyzer

    if voxtral is None:
        from rayscribe.config.voxtral import load_voxtral_settings

        voxtral = load_voxtral_settings()
    gauges = QueueGauges(queue_settings) if autoscale is None else None
    health = WorkerHealth(settings, voxtral_enabled=voxtral.voxtral_enabled, gauges=gauges)
    with serve_health(health, health_port), ray_session(settings.ray_address, log_to_driver=verbose):
        scaler = None
        if gauges is not None:
            gauges.start()
        if autoscale is not None:
            from actors.autoscaler import autoscaled_pool, start_autoscaler

            scaler = start_autoscaler(settings, queue_settings, autoscale)
            pool = autoscaled_pool(settings)
        else:
            work = queued_jobs(queue_settings) if drain and not (workers or settings.workers) else None
            pool = WhisperPool(settings, workers=workers, work=work, voxtral=voxtral)  # pairs with Voxtral on GPUs
        health.pool = pool
        if on_pool is not None:
            on_pool(pool)
        analyzer = None
        try:
            if scaler is None:
                pool.start()  # the policy's pool starts empty and grows as the loop follows the policy
            why = None
            if not pool.hybrid:  # a paired pool's workers each have their Voxtral partner on their GPU
                analyzer, why = start_analyzer(voxtral, settings)  # None (with the reason) when off or unloadable
            health.analyzer, health.analyzer_error, health.analyzer_started = analyzer, why, True
            loop = IngestLoop(settings, queue_settings, pool, drain=drain, analyzer=analyzer, analyzer_error=why,
                              autoscaler=scaler)
            health.loop = loop
            if on_loop is not None:
                on_loop(loop)
            with stop_on_signals(loop) if handle_signals else nullcontext():
                return loop.run()
        finally:
            health.finished = True
            if gauges is not None:
                gauges.stop()
            pool.stop()
            if analyzer is not None:
                ray.kill(analyzer, no_restart=True)
            if scaler is not None:
                ray.get(scaler.stop.remote(), timeout=60)


def queued_jobs(queue_settings: QueueSettings) -> int | None:
    """Jobs in both queues now (visible, in flight, delayed): with ``--drain`` the work there is, which bounds the
    automatic worker count; None when the queues cannot be read (the loop then says why)."""
    from rayscribe.errors import RayscribeError
    from rayscribe.queue.sqs import JobQueue

    queue = JobQueue(queue_settings)
    try:
        return sum(sum(queue.counts(which).values()) for which in ("high", "normal"))
    except RayscribeError:
        return None


@contextmanager
def serve_health(provider: WorkerHealth, port: int | None) -> Iterator[HealthServer | None]:
    """The worker's health endpoint on ``port`` (all interfaces) while the block runs; nothing for None or 0."""
    if not port:
        yield None
        return
    try:
        server = HealthServer(provider, port, mode="worker")
    except OSError as exc:
        raise RayscribeError(f"cannot serve the health endpoint on port {port}: {exc.strerror or exc}; set "
                             f"RAYSCRIBE_HEALTH_PORT to a free port, or to 0 to turn it off") from None
    with server:
        yield server


@contextmanager
def stop_on_signals(loop: IngestLoop) -> Iterator[None]:
    """While the loop runs: the first SIGINT (Ctrl-C) or SIGTERM asks it to stop after the jobs in flight, a
    second to release their leases at once. The previous handlers come back on exit."""
    count = 0

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal count
        count += 1
        loop.request_stop(release=count > 1)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@ray.remote(max_concurrency=2)  # type: ignore[call-overload]
class IngestActor:
    """:func:`run_worker` as an actor (e.g. a detached one on a cluster's head), on the cluster it runs in.
    ``run`` blocks until the loop stops; ``stop`` (from another caller) asks it to."""

    def __init__(self, settings: dict[str, Any], queue_settings: dict[str, Any], workers: int | None = None,
                 drain: bool = False) -> None:
        from rayscribe.logs import configure_logging

        self.settings = Settings(**settings)
        self.queue_settings = QueueSettings(**queue_settings)
        configure_logging(self.settings.log_level)
        self.size = workers
        self.drain = drain
        self.pool: WhisperPool | None = None
        self.loop: IngestLoop | None = None

    def run(self) -> dict[str, Any]:
        report = run_worker(self.settings, self.queue_settings, workers=self.size, drain=self.drain,
                            on_pool=self._keep_pool, on_loop=self._keep_loop)
        return report.to_dict()

    def _keep_pool(self, pool: WhisperPool) -> None:
        self.pool = pool

    def _keep_loop(self, loop: IngestLoop) -> None:
        self.loop = loop

    def workers(self) -> list[tuple[Any, str | None]]:
        """The pool's workers and the node each runs on (empty until started): for operators' tools and
        fault-injection tests."""
        if self.pool is None:
            return []
        return [(slot.handle, slot.info.get("node_id")) for slot in list(self.pool.slots)]

    def standbys_ready(self) -> int:
        """Standby workers started and waiting (see ``RAYSCRIBE_SPARE_WORKERS``)."""
        return self.pool.spares_ready() if self.pool is not None else 0

    def receiving(self) -> bool:
        """Whether the loop has started taking messages (its pool is up and its first receive returned)."""
        return self.loop is not None and self.loop.receiving.is_set()

    def stop(self, release: bool = False) -> None:
        if self.loop is not None:
            self.loop.request_stop(release)
