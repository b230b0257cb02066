"""A simulated Whisper backend for soak tests and benchmarks of the plumbing around the model: NOT for production.

It loads no model. ``transcribe_many`` sleeps for the batch's audio length divided by ``simulated_speed`` (a GPU
worker waiting on its device uses no CPU either, so 16 of them fit on a laptop) and returns a deterministic
transcript: one segment per ``simulated_segment_seconds`` of audio, two words a second, every word
``simulated``. Audio still goes through :func:`rayscribe.audio.decode_audio` in the worker, so corrupt files fail
exactly as they do with a real model, and the outputs are real files in every format.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from rayscribe.audio import SAMPLE_RATE
from rayscribe.config.settings import Settings
from rayscribe.engines.base import TranscribeOptions, WhisperEngine
from rayscribe.transcript import Segment, Transcript, Word

log = logging.getLogger(__name__)

WORD = "simulated"
WORDS_PER_SECOND = 2.0


def simulated_transcript(seconds: float, segment_seconds: float) -> Transcript:
    """The transcript the simulated engine gives for ``seconds`` of audio (a pure function, for checks)."""
    segments: list[Segment] = []
    start = 0.0
    while start < seconds - 1e-6:
        end = min(seconds, start + segment_seconds)
        count = max(1, round((end - start) * WORDS_PER_SECOND))
        step = (end - start) / count
        words = [Word(start=round(start + i * step, 3), end=round(start + (i + 1) * step, 3), word=f" {WORD}",
                      probability=1.0) for i in range(count)]
        segments.append(Segment(id=len(segments), start=round(start, 3), end=round(end, 3),
                                text=" ".join([WORD] * count), words=words))
        start = end
    return Transcript(segments=segments, language="en", duration=round(seconds, 3))


class SimulatedEngine(WhisperEngine):
    """Sleeps instead of running a model; see the module docstring."""

    backend = "simulated"

    def __init__(self, settings: Settings) -> None:
        self.speed = settings.simulated_speed
        self.segment_seconds = settings.simulated_segment_seconds
        self.model_name = "simulated"
        self.device = "cpu"
        self.compute_type = "none"
        self.load_seconds = 0.0
        log.info("simulated engine (tests and benchmarks only): %.1fx real time, no model loaded", self.speed)

    def transcribe_many(self, audios: list[np.ndarray], options: TranscribeOptions,
                        speech: list[list[dict] | None] | None = None) -> list[Transcript]:
        lengths = [audio.shape[0] / SAMPLE_RATE for audio in audios]
        time.sleep(sum(lengths) / self.speed)  # stands in for GPU time: no CPU used
        return [simulated_transcript(seconds, self.segment_seconds) for seconds in lengths]
