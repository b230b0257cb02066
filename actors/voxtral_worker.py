"""The Voxtral worker actor: one loaded Voxtral engine answering summaries, questions and transcriptions.

Thin: decoding is :func:`rayscribe.audio.decode_audio`, the work is :class:`VoxtralEngine`. Failures come back as
a result with ``status: failed`` and the reason (never as a raised task error), so a caller that runs Voxtral
beside Whisper keeps the transcript whatever happens here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import ray

from actors.cluster import actor_identity
from actors.process_stats import process_memory
from rayscribe.audio import decode_audio
from rayscribe.config.settings import Settings
from rayscribe.config.voxtral import VoxtralSettings
from rayscribe.engines.voxtral_engine import AnalyzeOptions, VoxtralEngine
from rayscribe.errors import RayscribeError
from rayscribe.logs import configure_logging
from rayscribe.work import failure_message

log = logging.getLogger("rayscribe.voxtral")


@ray.remote
class VoxtralWorker:
    """Holds one Voxtral engine; ``analyze`` takes the upload's bytes (or a decoded array) and options."""

    def __init__(self, settings: dict[str, Any]) -> None:
        configure_logging(os.environ.get("RAYSCRIBE_LOG_LEVEL", "INFO"))
        self.settings = VoxtralSettings(**settings)
        self.engine = VoxtralEngine(self.settings)
        self.identity = actor_identity(self.engine.describe())

    def info(self) -> dict[str, Any]:
        return self.identity

    def memory(self) -> dict[str, int]:
        """Host memory of this actor and the GPU memory its torch tensors hold."""
        return {**process_memory(), "gpu_bytes": self.engine.gpu_memory_bytes()}

    def analyze(self, audio: bytes | np.ndarray, options: AnalyzeOptions | None = None,
                name: str = "audio") -> dict[str, Any]:
        """``{"status": "done", "analysis": {...}}`` or ``{"status": "failed", "error", "error_type"}``."""
        try:
            array = audio if isinstance(audio, np.ndarray) else decode_audio(audio, name=name)
            analysis = self.engine.analyze(array, options or AnalyzeOptions())
        except Exception as exc:
            log.warning("analysis of %s failed: %s", name, exc)
            return {"status": "failed", "error": failure_message(exc), "error_type": type(exc).__name__,
                    "worker": self.identity}
        return {"status": "done", "analysis": analysis.to_dict(), "worker": self.identity}


def start_analyzer(settings: VoxtralSettings, engine: Settings | None = None,
                   timeout: float | None = None) -> tuple[Any, str | None]:
    """Start one Voxtral worker when ``RAYSCRIBE_VOXTRAL_ENABLED`` is on: ``(handle, None)``; ``(None, reason)``
    when it is off or the model could not load (the queue then transcribes and records the analysis as failed
    with the reason, instead of not starting at all). It asks for its GPU fraction when the cluster has GPUs or
    its autoscaler may launch them (``engine``'s ``RAYSCRIBE_GPU_NODES``), and waits up to
    ``RAYSCRIBE_GPU_WAIT_SECONDS`` for it."""
    from ray.exceptions import GetTimeoutError, RayActorError

    from actors.cluster import gpu_wanted
    from rayscribe.config.settings import load_settings

    if not settings.voxtral_enabled:
        return None, "audio understanding is off on this worker (set RAYSCRIBE_VOXTRAL_ENABLED=true)"
    engine = engine or load_settings()
    timeout = timeout or engine.gpu_wait_seconds
    try:
        use_gpu = gpu_wanted(settings.voxtral_device, engine.gpu_nodes, settings.voxtral_gpu_fraction,
                             autoscaling_config=engine.autoscaling_config, what="RAYSCRIBE_VOXTRAL_DEVICE=cuda")
    except RayscribeError as exc:
        return None, str(exc)
    worker: Any = VoxtralWorker
    handle = worker.options(num_cpus=settings.voxtral_cpus,
                            num_gpus=settings.voxtral_gpu_fraction if use_gpu else 0,
                            max_restarts=0).remote(settings.model_dump())
    try:
        info = ray.get(handle.info.remote(), timeout=timeout)
    except (RayActorError, GetTimeoutError) as exc:
        ray.kill(handle, no_restart=True)
        cause = getattr(exc, "cause", None) or exc
        reason = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(exc).__name__
        log.error("Voxtral worker could not start: %s", reason)
        return None, f"the Voxtral worker could not start: {reason}"
    log.info("Voxtral worker ready: %s on %s (%s)", info["model"], info["device"], info["dtype"])
    return handle, None
