"""Whisper engines: one interface (:class:`~rayscribe.engines.base.WhisperEngine`), two backends (and a simulated
one for soak tests and benchmarks of the plumbing)."""

from __future__ import annotations

from rayscribe.config.settings import Settings
from rayscribe.engines.base import TranscribeOptions, WhisperEngine

__all__ = ["TranscribeOptions", "WhisperEngine", "create_engine"]


def create_engine(settings: Settings) -> WhisperEngine:
    """Build the backend the settings name; heavy imports happen only for the chosen one. WhisperX does its own
    language detection and gets no routing (RAYSCRIBE_ENGLISH_MODEL applies to faster-whisper)."""
    if settings.backend == "simulated":
        from rayscribe.engines.simulated_engine import SimulatedEngine

        return SimulatedEngine(settings)
    if settings.backend == "whisperx":
        from rayscribe.engines.whisperx_engine import WhisperXEngine

        return WhisperXEngine(settings)
    from rayscribe.engines.routing import RoutingEngine

    return RoutingEngine(settings)  # faster-whisper, one model or several by language (engines/routing.py)
