"""Whisper engines: one interface (:class:`~rayscribe.engines.base.WhisperEngine`), two backends (and a simulated
one for soak tests and benchmarks of the plumbing)."""

from __future__ import annotations

from rayscribe.config.settings import Settings
from rayscribe.engines.base import TranscribeOptions, WhisperEngine

__all__ = ["TranscribeOptions", "WhisperEngine", "create_engine"]


def create_engine(settings: Settings) -> WhisperEngine:
    """Build the backend the settings name; heavy imports happen only for the chosen one."""
    if settings.backend == "simulated":
        from rayscribe.engines.simulated_engine import SimulatedEngine

        return SimulatedEngine(settings)
    if settings.backend == "whisperx":
        from rayscribe.engines.whisperx_engine import WhisperXEngine

        return WhisperXEngine(settings)
    from rayscribe.engines.faster_whisper_engine import FasterWhisperEngine

    return FasterWhisperEngine(settings)
