"""One engine that hears each file's language first and sends the file to the model that knows it.

Wraps faster-whisper engines, so the pool, the queue and Serve route without knowing it:

- ``RAYSCRIBE_MODEL`` (the main model) transcribes every file, except
- files detected as English, which go to ``RAYSCRIBE_ENGLISH_MODEL`` when it is set (a faster English-only model),
- and, when the main model is English-only (``tiny.en``), files in another language, which go to the multilingual
  ``RAYSCRIBE_DETECT_MODEL`` (default ``base``): an English-only model never gets non-English speech. Without a
  multilingual model such a file fails naming its language (:class:`LanguageNotSupportedError`).

The language is detected once per file, on its first speech, by the multilingual model (the main one when it is
multilingual, else the detection model), unless the request fixes it. Files of one language then go to their
model together, so that model still packs short files into shared windows. Each transcript names the model
that made it (``Transcript.model``).

Every worker holds all the models its settings name (a pool stays one kind of worker, any worker takes any
file): ``base`` + ``tiny.en`` is about 220 MB of int8 weights on the CPU, or the same share of one GPU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from faster_whisper import BatchedInferencePipeline

from rayscribe.config.checks import LANGUAGE_NAMES
from rayscribe.config.settings import Settings
from rayscribe.engines.base import TranscribeOptions, WhisperEngine
from rayscribe.engines.faster_whisper_engine import FasterWhisperEngine
from rayscribe.errors import LanguageNotSupportedError, RayscribeError
from rayscribe.splitting import fill_speech_clips
from rayscribe.transcript import Transcript

log = logging.getLogger(__name__)

EngineFactory = Callable[[Settings], FasterWhisperEngine]


class RoutingEngine(WhisperEngine):
    """The main model, plus an English model and a multilingual fallback where the settings call for them."""

    backend = "faster-whisper"
    batches_across_files = True

    def __init__(self, settings: Settings, factory: EngineFactory = FasterWhisperEngine) -> None:
        started = time.perf_counter()
        self._factory = factory
        self.main = factory(settings)
        self.device, self.compute_type = self.main.device, self.main.compute_type
        self.model_name = self.main.model_name
        self.vad_threads = self.main.vad_threads
        self.english: FasterWhisperEngine | None = None
        if settings.english_model and settings.english_model != settings.model:
            self.english = factory(settings.model_copy(update={"model": settings.english_model}))
        elif settings.english_model:
            self.english = self.main
        self.multilingual: FasterWhisperEngine | None = self.main if self.main.multilingual else None
        if self.multilingual is None and self.english is not None and self.english.multilingual:
            self.multilingual = self.english
        self.no_multilingual = f"{settings.model} is English-only"
        self._fallback_settings: Settings | None = None
        self._fallback_lock = threading.Lock()
        if self.multilingual is None and settings.detect_model:
            self._fallback_settings = settings.model_copy(update={"model": settings.detect_model})
            if settings.language is None:  # every file is detected: load it now; else on the first need
                self._load_fallback()
        elif self.multilingual is None:
            self.no_multilingual += " and RAYSCRIBE_DETECT_MODEL is empty"
        self.load_seconds = time.perf_counter() - started

    def _load_fallback(self) -> FasterWhisperEngine | None:
        """The multilingual detection model beside an English-only main model, loaded once (a failed load is
        reported once, and the files that need it fail naming their language)."""
        with self._fallback_lock:
            if self.multilingual is None and self._fallback_settings is not None:
                fallback, self._fallback_settings = self._fallback_settings, None
                try:
                    engine = self._factory(fallback)
                except RayscribeError as exc:
                    self.no_multilingual += f" and the multilingual model {fallback.model!r} did not load ({exc})"
                    log.warning("no multilingual model: %s; files given another language fail, the others are "
                                "transcribed as English unchecked", self.no_multilingual)
                    return None
                if not engine.multilingual:
                    raise RayscribeError(f"the detection model {fallback.model!r} is English-only; set "
                                         "RAYSCRIBE_DETECT_MODEL to a multilingual model such as base")
                self.multilingual = engine
            return self.multilingual

    # -- routing ------------------------------------------------------------------------------------------

    def route(self, language: str) -> FasterWhisperEngine:
        """The engine for speech in ``language``; :class:`LanguageNotSupportedError` when none knows it."""
        if language == "en":
            return self.english or self.main
        name = LANGUAGE_NAMES.get(language, language)
        engine = self.main if self.main.multilingual else self._load_fallback()
        if engine is not None and engine.knows(language):
            return engine
        if engine is not None:
            raise LanguageNotSupportedError(
                f"{engine.model_name} has no {name.title()} ({language}) in its vocabulary; use a model that has "
                "(large-v3 for Cantonese), or leave the language to detection")
        raise LanguageNotSupportedError(
            f"the audio is in {name.title()} ({language}) but {self.no_multilingual}; set RAYSCRIBE_MODEL to a "
            "multilingual model (base, the default) or RAYSCRIBE_DETECT_MODEL=base"
        )

    def languages(self, audios: list[np.ndarray], clips: list[list[dict]],
                  options: TranscribeOptions) -> list[tuple[str, float]]:
        """Each file's language and its probability: the one given, else detected on the file's first speech
        by the multilingual model, else (no such model) English, unchecked."""
        if options.language:
            return [(options.language, 1.0)] * len(audios)
        detector = self._load_fallback()
        if detector is None:
            return [("en", 1.0)] * len(audios)
        return [detector.detect(audio, found) for audio, found in zip(audios, clips)]

    def detect_language(self, audio: np.ndarray, options: TranscribeOptions,
                        speech: list[dict] | None = None) -> tuple[str, float] | None:
        if options.language or self._load_fallback() is None:
            return None
        return self.languages([audio], fill_speech_clips([audio], [speech], self.vad_threads), options)[0]

    def transcribe_many(self, audios: list[np.ndarray], options: TranscribeOptions,
                        speech: list[list[dict] | None] | None = None) -> list[Transcript]:
        clips = fill_speech_clips(audios, speech, self.vad_threads)
        detected = self.languages(audios, clips, options)
        groups: dict[tuple[int, str], list[int]] = {}
        engines: dict[int, FasterWhisperEngine] = {}
        for index, (language, _) in enumerate(detected):
            engine = self.route(language)  # raises before any decoding: the worker retries the others alone
            engines[id(engine)] = engine
            groups.setdefault((id(engine), language), []).append(index)
        results: dict[int, Transcript] = {}
        for (key, language), members in groups.items():
            engine = engines[key]
            transcripts = engine.transcribe_many([audios[i] for i in members], options.with_(language=language),
                                                 [clips[i] for i in members])
            for index, transcript in zip(members, transcripts):
                transcript.language = language
                transcript.language_probability = round(detected[index][1], 4)
                transcript.model = engine.model_name
                results[index] = transcript
        return [results[i] for i in range(len(audios))]

    @property
    def pipeline(self) -> BatchedInferencePipeline:
        """The main model's faster-whisper pipeline (tests and benchmarks compare against it)."""
        return self.main.pipeline

    def describe(self) -> dict[str, object]:
        models = {"main": self.main.model_name}
        if self.english is not None:
            models["english"] = self.english.model_name
        if self.multilingual is not None and self.multilingual is not self.main:
            models["multilingual"] = self.multilingual.model_name
        return {**super().describe(), "models": models}

