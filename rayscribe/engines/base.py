"""The interface every Whisper backend implements, and the per-request options they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import numpy as np

from rayscribe.config.settings import Settings
from rayscribe.engines.device import choose_device
from rayscribe.engines.model_paths import model_label, resolve_model
from rayscribe.transcript import Transcript


@dataclass(frozen=True)
class TranscribeOptions:
    """Decoding options a caller may set per request; defaults come from settings."""

    language: str | None = None
    # "transcribe" (speech in its own language) or "translate" (English text out), as Whisper and OpenAI name them.
    task: str = "transcribe"
    beam_size: int = 5
    batch_size: int = 8
    word_timestamps: bool = True
    initial_prompt: str | None = None
    temperature: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TranscribeOptions:
        return cls(
            language=settings.language,
            beam_size=settings.beam_size,
            batch_size=settings.batch_size,
            word_timestamps=settings.word_timestamps,
            task=settings.task,
        )

    def with_(self, **changes: object) -> TranscribeOptions:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


class WhisperEngine(ABC):
    """A loaded Whisper model that turns 16 kHz mono float32 arrays into :class:`Transcript` objects."""

    backend: str
    model_name: str
    device: str
    compute_type: str
    load_seconds: float
    # Whether several files in one call share model batches (so the queue path packs short jobs for it).
    batches_across_files: bool = False

    def _prepare(self, settings: Settings) -> tuple[str, int]:
        """Decide the device and compute type (once per process), name the model; return the model's path (or
        hub name) and the CPU threads this worker may use. Every backend starts here."""
        choice = choose_device(settings.device, settings.compute_type)
        self.device = choice.device
        self.compute_type = choice.compute_type
        self.model_name = model_label(settings.model)
        threads = settings.cpu_threads or max(1, round(settings.cpus_per_worker))
        return resolve_model(settings.model, settings.model_dir), threads

    @abstractmethod
    def transcribe_many(self, audios: list[np.ndarray], options: TranscribeOptions,
                        speech: list[list[dict] | None] | None = None) -> list[Transcript]:
        """Transcribe several files at once; backends batch speech segments across files where they can.
        ``speech``: per file, Silero speech clips already found (samples), or ``None`` to look for them; a
        backend with another voice-activity model may ignore them."""

    def detect_language(self, audio: np.ndarray, options: TranscribeOptions,
                        speech: list[dict] | None = None) -> tuple[str, float] | None:
        """The language of ``audio``'s first speech and its probability, where this engine picks its model by
        language and ``options`` leave it open; else None. A file split over workers asks this once, on its first
        piece, so that every piece is decoded in one language by one model."""
        return None

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """Transcribe one file."""
        return self.transcribe_many([audio], options)[0]

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "model": self.model_name,
            "device": self.device,
            "compute_type": self.compute_type,
            "load_seconds": round(self.load_seconds, 3),
            "batches_across_files": self.batches_across_files,
        }
