"""The Whisper worker actor: one loaded engine, transcribing groups of files sent by the pool."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import ray

from actors.cluster import actor_identity
from actors.process_stats import process_memory
from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.config.queue import load_queue_settings
from rayscribe.config.settings import Settings
from rayscribe.engines import TranscribeOptions, create_engine
from rayscribe.logs import configure_logging
from rayscribe.splitting import SpeechPiece
from rayscribe.storage import Storage
from rayscribe.work import ItemResult, WorkItem, failure

log = logging.getLogger("rayscribe.worker")


@ray.remote(concurrency_groups={"probe": 1})  # type: ignore[call-overload]
class WhisperWorker:
    """Holds one Whisper engine. Bad files fail alone: every error is caught per item and returned. Jobs run one
    at a time; liveness probes answer on their own thread meanwhile (see :meth:`alive`)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)
        configure_logging(self.settings.log_level)
        self.engine = create_engine(self.settings)
        self.options = TranscribeOptions.from_settings(self.settings)
        self.identity = actor_identity(self.engine.describe())
        self.storage: Storage | None = None  # made on the first item this worker reads itself

    def info(self) -> dict[str, Any]:
        return self.identity

    @ray.method(concurrency_group="probe")
    def alive(self) -> bool:
        """Answers while a job runs: the ingest loop takes a worker that stays silent for a frozen process or a
        lost node, which Ray may take long to report (or, for a frozen process, never)."""
        return True

    def memory(self) -> dict[str, int]:
        """Host memory of this actor (the hybrid benchmark reports it beside the Voxtral worker's)."""
        return {**process_memory(), "gpu_bytes": 0}  # CTranslate2 does not report its GPU allocations

    def detect_language(self, piece: SpeechPiece, options: TranscribeOptions | None = None) -> tuple[str, float] | None:
        """The language of a split file's first piece, when this worker's engine routes by language and the
        options leave it open (the coordinator then fixes it for every piece); else None."""
        return self.engine.detect_language(np.array(piece.samples, dtype=np.float32), options or self.options,
                                           piece.clips)

    def transcribe(self, items: list[WorkItem], payloads: list[Any], options: TranscribeOptions | None = None,
                   language: str | None = None) -> list[ItemResult]:
        """Decode and transcribe ``items`` together; ``payloads`` are their bytes, or pieces of a split file
        (:class:`SpeechPiece`: samples and speech clips), or object refs to either, or None for an item this
        worker reads from its ``source`` itself (an S3 object of a batch run: not through the driver).
        ``language`` fixes the language over ``options`` (a split file's, detected once)."""
        options = (options or self.options).with_(language=language)
        results: dict[str, ItemResult] = {}
        decoded: list[tuple[WorkItem, Any, list[dict] | None]] = []
        for item, payload in zip(items, payloads):
            try:
                data = ray.get(payload) if isinstance(payload, ray.ObjectRef) else payload
                if data is None:
                    data = self._read(item.source)
                if isinstance(data, SpeechPiece):
                    decoded.append((item, np.array(data.samples, dtype=np.float32), data.clips))
                else:
                    decoded.append((item, decode_audio(data, name=item.name), None))
            except Exception as exc:
                results[item.key] = failure(item, exc, self.identity)
                log.warning("file failed: %s", results[item.key].error)
        if decoded:
            self._run(decoded, options, results)
        return [results[item.key] for item in items]

    def _read(self, source: str) -> bytes:
        """An input's bytes from where it lives (S3, with the AWS retry policy of the queue settings)."""
        if self.storage is None:
            self.storage = Storage(load_queue_settings())
        return self.storage.read_bytes(source)

    def _run(self, decoded: list[tuple[WorkItem, Any, list[dict] | None]], options: TranscribeOptions,
             results: dict[str, ItemResult]) -> None:
        started = time.perf_counter()
        try:
            transcripts = self.engine.transcribe_many([audio for _, audio, _ in decoded], options,
                                                      [clips for *_, clips in decoded])
        except Exception as exc:
            if len(decoded) == 1:
                item = decoded[0][0]
                results[item.key] = failure(item, exc, self.identity)
                log.warning("file failed: %s", results[item.key].error)
                return
            for pair in decoded:  # isolate the file that broke the group
                self._run([pair], options, results)
            return
        elapsed = time.perf_counter() - started
        total_audio = sum(audio.shape[0] for _, audio, _ in decoded) / SAMPLE_RATE or 1.0
        for (item, audio, _), transcript in zip(decoded, transcripts):
            seconds = audio.shape[0] / SAMPLE_RATE
            results[item.key] = ItemResult(
                key=item.key, name=item.name, transcript=transcript, audio_seconds=seconds,
                processing_seconds=elapsed * seconds / total_audio, attempts=item.attempts,
                worker=self.identity,
            )

