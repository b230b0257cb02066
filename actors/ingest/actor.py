"""The ingest loop with its own Whisper pool, as an actor (e.g. a detached one on a cluster's head)."""

from __future__ import annotations

from typing import Any

import ray

from actors.ingest.loop import IngestLoop
from actors.pool import WhisperPool
from rayscribe.config.queue import QueueSettings
from rayscribe.config.settings import Settings


@ray.remote(max_concurrency=2)  # type: ignore[call-overload]
class IngestActor:
    """:class:`IngestLoop` with its own Whisper pool, as an actor (e.g. a detached one on a cluster's head).
    ``run`` blocks until the loop stops; ``stop`` (from another caller) asks it to."""

    def __init__(self, settings: dict[str, Any], queue_settings: dict[str, Any], workers: int | None = None,
                 drain: bool = False) -> None:
        from rayscribe.logs import configure_logging

        self.settings = Settings(**settings)
        self.queue_settings = QueueSettings(**queue_settings)
        configure_logging(self.settings.log_level)
        self.pool = WhisperPool(self.settings, workers=workers)
        self.drain = drain
        self.loop: IngestLoop | None = None

    def run(self) -> dict[str, Any]:
        from actors.voxtral_worker import start_analyzer
        from rayscribe.config.voxtral import load_voxtral_settings

        self.pool.start()
        analyzer, why = start_analyzer(load_voxtral_settings())
        try:
            self.loop = IngestLoop(self.settings, self.queue_settings, self.pool, drain=self.drain,
                                   analyzer=analyzer, analyzer_error=why)
            return self.loop.run().to_dict()
        finally:
            self.pool.stop()
            if analyzer is not None:
                ray.kill(analyzer, no_restart=True)

    def workers(self) -> list[tuple[Any, str | None]]:
        """The pool's workers and the node each runs on (empty until started): for operators' tools and
        fault-injection tests."""
        return [(slot.handle, slot.info.get("node_id")) for slot in list(self.pool.slots)]

    def standbys_ready(self) -> int:
        """Standby workers started and waiting (see ``RAYSCRIBE_SPARE_WORKERS``)."""
        return self.pool.spares_ready()

    def receiving(self) -> bool:
        """Whether the loop has started taking messages (its pool is up and its first receive returned)."""
        return self.loop is not None and self.loop.receiving.is_set()

    def stop(self, release: bool = False) -> None:
        if self.loop is not None:
            self.loop.request_stop(release)


