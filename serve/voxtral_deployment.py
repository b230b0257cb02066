"""The Voxtral model deployment: one loaded :class:`VoxtralEngine` per replica, called by the ingress through a
handle for ``/v1/audio/analyze`` and the hybrid route.

Optional: :func:`serve.app.build_app` binds it only when ``RAYSCRIBE_VOXTRAL_ENABLED=true``. A model that fails to
load (not downloaded, too little GPU memory, extra missing) does not fail the app: the replica stays up and every
request gets the load error back, which the ingress answers as a 503 naming the fix, while transcription goes on.
Results come back as plain dicts with a status (never raised through the handle), so the ingress maps each kind
of failure to its status code.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve

from rayscribe.audio import engine_audio
from rayscribe.config.voxtral import VoxtralSettings
from rayscribe.engines.voxtral_engine import AnalyzeOptions, VoxtralEngine
from rayscribe.logs import configure_logging
from rayscribe.work import failure_message

log = logging.getLogger("rayscribe.serve")

VOXTRAL_DEPLOYMENT = "VoxtralDeployment"


@serve.deployment(name=VOXTRAL_DEPLOYMENT)
class VoxtralDeployment:
    """Holds one Voxtral engine (or the reason it could not load); requests run one at a time on a worker
    thread, so the replica keeps answering ``info`` meanwhile."""

    def __init__(self, settings: dict[str, Any]) -> None:
        configure_logging(os.environ.get("RAYSCRIBE_LOG_LEVEL", "INFO"))
        self.settings = VoxtralSettings(**settings)
        self.engine: VoxtralEngine | None = None
        self.load_error: str | None = None
        try:
            self.engine = VoxtralEngine(self.settings)
        except Exception as exc:
            self.load_error = failure_message(exc)
            log.error("Voxtral is unavailable: %s", self.load_error)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxtral")

    async def analyze(self, audio: np.ndarray, options: AnalyzeOptions) -> dict[str, Any]:
        """``{"status": "done", "analysis"}``, ``{"status": "unavailable", "error"}`` or
        ``{"status": "failed", "error", "error_type"}``."""
        if self.engine is None:
            return {"status": "unavailable", "error": self.load_error or "Voxtral is not loaded"}
        engine = self.engine
        audio = engine_audio(audio)  # the ingress sends int16 PCM
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, engine.analyze, audio, options)
        except Exception as exc:
            log.warning("analysis failed: %s", exc)
            return {"status": "failed", "error": failure_message(exc), "error_type": type(exc).__name__}
        return {"status": "done", "analysis": result.to_dict()}

    def info(self) -> dict[str, Any]:
        if self.engine is None:
            return {"model": self.settings.voxtral_model, "loaded": False, "error": self.load_error}
        return {**self.engine.describe(), "loaded": True, "pid": os.getpid()}
