"""The model deployment: one loaded rayscribe engine per replica, fed by dynamic batches of requests.

Concurrent requests that reach a replica wait in a batch queue (:mod:`serve.request_batcher`) and go to the engine
together, so its cross-file batching (VAD chunks of several files in one model batch, short files packed into
shared windows) turns concurrency into throughput instead of a queue. Requests in one batch may ask for different
options (language, prompt, temperature, task); they are grouped by options and each group is one
``transcribe_many`` call, so a translation never shares an engine call with a transcription.

The engine runs on one worker thread: it is not thread-safe, and keeping the compute off the event loop lets
the replica keep accepting requests (and filling the next batch) while a batch decodes.

Streaming cuts long audio at quiet points into spans of about :data:`STREAM_SPAN_SECONDS` and sends each span
through the same batch queue, yielding its segments as soon as it is decoded; audio up to that length is one
span, so its text is the same as without streaming.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from ray import serve

from rayscribe.audio import SAMPLE_RATE, engine_audio
from rayscribe.config.settings import Settings
from rayscribe.engines import TranscribeOptions, create_engine
from rayscribe.logs import configure_logging
from rayscribe.transcript import Segment, Transcript, Word
from serve.request_batcher import ContinuousBatcher

log = logging.getLogger("rayscribe.serve")

STREAM_SPAN_SECONDS = 30.0
# Where a span may end: the quietest 100 ms frame in the last few seconds before the span limit.
STREAM_SEARCH_SECONDS = 5.0
_FRAME = SAMPLE_RATE // 10


@dataclass(frozen=True)
class RequestOptions:
    """What a request may change about decoding; the rest comes from the replica's settings."""

    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    task: str = "transcribe"  # or "translate": English text out


@dataclass(frozen=True)
class StreamedSegment:
    """A streamed segment with the language its span was decoded in (detected, or the request's)."""

    segment: Segment
    language: str


@dataclass
class _Job:
    audio: np.ndarray
    options: TranscribeOptions
    queued: float = 0.0  # perf_counter when it joined the batch queue
    started: float = 0.0  # when its batch went to the engine
    engine_s: float = 0.0  # that batch's time in the engine


@dataclass(frozen=True)
class TimedTranscript:
    """A transcript and where its time went in the replica, for the ingress's ``Server-Timing`` header: a
    client (or the benchmark) can tell time in the engine from time in Serve without timing the replica."""

    transcript: Transcript
    queue_s: float  # waiting in the batch queue for the engine
    engine_s: float  # the engine's time for the batch this request was in


def stream_spans(audio: np.ndarray, span_seconds: float = STREAM_SPAN_SECONDS) -> list[tuple[int, int]]:
    """Cut ``audio`` into spans of at most ``span_seconds``, each ending at the quietest 100 ms frame of its
    last :data:`STREAM_SEARCH_SECONDS`, so cuts fall in pauses rather than in words."""
    limit = int(span_seconds * SAMPLE_RATE)
    spans: list[tuple[int, int]] = []
    start = 0
    while audio.shape[0] - start > limit:
        window_start = start + limit - int(STREAM_SEARCH_SECONDS * SAMPLE_RATE)
        frames = (limit - (window_start - start)) // _FRAME
        window = audio[window_start : window_start + frames * _FRAME].reshape(frames, _FRAME)
        quietest = int(np.argmin(np.sqrt(np.mean(window.astype(np.float64) ** 2, axis=1))))
        cut = window_start + quietest * _FRAME + _FRAME // 2
        spans.append((start, cut))
        start = cut
    spans.append((start, audio.shape[0]))
    return spans


def _shift(segment: Segment, offset: float, number: int) -> Segment:
    return replace(
        segment, id=number, start=round(segment.start + offset, 3), end=round(segment.end + offset, 3),
        words=[Word(start=round(w.start + offset, 3), end=round(w.end + offset, 3), word=w.word,
                    probability=w.probability) for w in segment.words],
    )


@serve.deployment(name="WhisperDeployment")
class WhisperDeployment:
    """Holds one engine; ``transcribe`` and ``stream`` are called by the ingress through a handle."""

    def __init__(self, settings: dict[str, Any], max_batch_size: int, batch_wait_s: float,
                 partner: tuple[dict[str, Any], list[dict[str, float]]] | None = None) -> None:
        self.settings = Settings(**settings)
        configure_logging(self.settings.log_level)
        self.partner = _start_partner(*partner) if partner is not None else None
        self.engine = create_engine(self.settings)
        self.base_options = TranscribeOptions.from_settings(self.settings)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        from ray.serve.metrics import Counter, Histogram

        self._batch_sizes = Histogram("rayscribe_serve_batch_size", description="requests per engine batch",
                                      boundaries=[1, 2, 4, 8, 16, 32, 64])
        self._engine_seconds = Counter("rayscribe_serve_engine_seconds",
                                       description="seconds the engine spent decoding")
        self._batcher: ContinuousBatcher[_Job, Transcript] = ContinuousBatcher(
            self._timed_batch, max_batch_size, batch_wait_s, self._executor, self._batch_sizes.observe)
        log.info("whisper replica ready (pid %d): %s; batches up to %d, wait %.0f ms", os.getpid(),
                 self.engine.describe(), max_batch_size, batch_wait_s * 1000)

    # -- batching -------------------------------------------------------------------------------------

    def _options(self, request: RequestOptions) -> TranscribeOptions:
        return self.base_options.with_(language=request.language, initial_prompt=request.prompt,
                                       temperature=request.temperature, task=request.task)

    def _run_group(self, audios: list[np.ndarray], options: TranscribeOptions) -> list[Transcript | Exception]:
        try:
            return list(self.engine.transcribe_many(audios, options))
        except Exception as exc:
            if len(audios) == 1:
                log.warning("transcription failed: %s", exc)
                return [exc]
            # isolate the request that broke the group; the others still get their transcripts
            return [r for audio in audios for r in self._run_group([audio], options)]

    def _timed_batch(self, jobs: list[_Job]) -> list[Transcript | Exception]:
        started = time.perf_counter()
        try:
            return self._run_batch(jobs)
        finally:
            elapsed = time.perf_counter() - started
            self._engine_seconds.inc(elapsed)
            for job in jobs:
                job.started, job.engine_s = started, elapsed

    def _run_batch(self, jobs: list[_Job]) -> list[Transcript | Exception]:
        results: list[Transcript | Exception | None] = [None] * len(jobs)
        groups: dict[TranscribeOptions, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.options, []).append(i)
        for options, members in groups.items():
            for i, result in zip(members, self._run_group([jobs[i].audio for i in members], options)):
                results[i] = result
        return [r if r is not None else RuntimeError("no result") for r in results]

    async def _one(self, audio: np.ndarray, options: TranscribeOptions) -> TimedTranscript:
        audio = engine_audio(audio)
        job = _Job(audio, options, queued=time.perf_counter())
        transcript = await self._batcher.submit(job)
        return TimedTranscript(transcript, queue_s=max(0.0, job.started - job.queued), engine_s=job.engine_s)

    # -- the handle API -------------------------------------------------------------------------------

    async def transcribe(self, audio: np.ndarray, request: RequestOptions) -> TimedTranscript:
        """The whole transcript of one upload (16 kHz mono, int16 PCM as the ingress sends it, or float32),
        with its time in the batch queue and in the engine."""
        return await self._one(audio, self._options(request))

    async def stream(self, audio: np.ndarray, request: RequestOptions) -> AsyncIterator[StreamedSegment]:
        """The transcript's segments, span by span, each span as soon as it is decoded."""
        options = self._options(request)
        number = 0
        for start, end in stream_spans(audio):
            timed = await self._one(audio[start:end], options)
            for segment in timed.transcript.segments:
                yield StreamedSegment(_shift(segment, start / SAMPLE_RATE, number), timed.transcript.language)
                number += 1

    def info(self) -> dict[str, Any]:
        """The engine (backend, model, device) and this replica's batching so far."""
        return {**self.engine.describe(), **asdict(self._batcher.stats), "pid": os.getpid()}

    # -- the hybrid: a Voxtral partner on this replica's GPU ---------------------------------------------------

    async def analyze(self, audio: np.ndarray, options: Any) -> dict[str, Any]:
        """The partner's analysis, with :class:`serve.voxtral_deployment.VoxtralDeployment`'s contract:
        ``{"status": "done" | "failed" | "unavailable", ...}``."""
        if self.partner is None:
            return {"status": "unavailable", "error": "this replica has no Voxtral partner"}
        try:
            return dict(await self.partner.analyze.remote(engine_audio(audio), options))
        except Exception as exc:  # the partner died (e.g. its model could not load)
            from actors.pool.workers import root_cause

            return {"status": "unavailable", "error": f"the Voxtral worker is not running: {root_cause(exc)}"}

    def placement(self) -> dict[str, Any]:
        """Where this replica and its partner run (node, GPU ids): what the hybrid placement tests check."""
        import ray

        from actors.cluster import actor_identity

        me = actor_identity({})
        partner = ray.get(self.partner.info.remote()) if self.partner is not None else None
        return {"replica": me, "partner": partner}


def _start_partner(voxtral: dict[str, Any], bundles: list[dict[str, float]]) -> Any:
    """This replica's Voxtral worker, in the second bundle of the placement group Serve reserved for the replica
    (STRICT_PACK: the same node, and the GPU the replica's fraction is on while it has room)."""
    from ray.util import get_current_placement_group

    from actors.hybrid import start_in_bundle
    from actors.voxtral_worker import VoxtralWorker

    pg = get_current_placement_group()
    if pg is None:
        raise RuntimeError("a paired Whisper replica must run in its placement group")
    return start_in_bundle(VoxtralWorker, pg, 1, bundles[1], voxtral)
