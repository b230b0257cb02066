"""Transcribe one long file on several Whisper workers at once (see ``rayscribe.splitting`` for where it cuts).

A zero-CPU coordinator actor, started with the pool and kept warm, does the work for each long file: it decodes
the file, finds the cut points, puts each piece in the object store, sends each worker a piece and the next
when it finishes, and stitches the results. It holds no CPU slot, so it can run beside busy workers, and being
long-lived it costs no process start or imports per file (a task did: 3-4 s on 2 cores). Its voice-activity
pass is the only one: each piece carries its speech clips, and the workers decode them without looking again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError

from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.config.settings import Settings
from rayscribe.engines import TranscribeOptions
from rayscribe.logs import configure_logging
from rayscribe.splitting import cut_audio, piece_count, plan_pieces, speech_clips, stitch, window_cuts
from rayscribe.work import ItemResult, WorkItem, failure

log = logging.getLogger("rayscribe.split")

PIECE_TRIES = 2  # a piece whose worker dies is sent once more, to another worker


class SplitError(RuntimeError):
    """Every worker a piece was sent to died; the pool retries the whole file."""


def should_split(item: WorkItem, settings: Settings, workers: int) -> bool:
    """Split a file when splitting is on, there is more than one worker and the file is known to be long."""
    return (settings.split_seconds > 0 and workers > 1 and item.duration is not None
            and item.duration > settings.split_seconds)


SPLITS_AT_ONCE = 16  # long files one coordinator handles concurrently (threads; each mostly waits on workers)


@ray.remote(num_cpus=0, max_concurrency=SPLITS_AT_ONCE, max_restarts=-1,  # type: ignore[call-overload]
            max_task_retries=0)
class SplitCoordinator:
    """Splits, dispatches and stitches long files. If it dies, Ray starts it again; the calls it was running
    fail with ``RayActorError`` and their callers retry the file."""

    def __init__(self, log_level: str = "INFO") -> None:
        configure_logging(log_level)
        speech_clips(np.zeros(SAMPLE_RATE, dtype=np.float32))  # load the VAD model now, not on the first file

    def ready(self) -> bool:
        return True

    def transcribe(self, item: WorkItem, payload: Any, options: TranscribeOptions | None, workers: list[Any],
                   max_piece_seconds: float) -> list[ItemResult]:
        return transcribe_split(item, payload, options, workers, max_piece_seconds)


def detect_once(workers: list[Any], first_speech: Any, options: TranscribeOptions | None,
                name: str) -> tuple[str, float] | None:
    """A split file's language, heard once on its first speech by one worker, so that no piece is decoded in
    another language or by another model than the rest; None where the workers' engine does not route by
    language, the options fix it, or the worker died (each piece then hears its own)."""
    for worker in workers[:2]:
        try:
            return ray.get(worker.detect_language.remote(first_speech, options))
        except RayActorError as exc:
            log.warning("language detection for %s: worker died (%s); trying another", name, exc)
    return None


def start_coordinator(settings: Settings) -> Any:
    """A new :class:`SplitCoordinator` (call ``ready`` on it to wait until it has loaded)."""
    coordinator: Any = SplitCoordinator
    return coordinator.remote(settings.log_level)


def transcribe_split(item: WorkItem, payload: Any, options: TranscribeOptions | None, workers: list[Any],
                     max_piece_seconds: float) -> list[ItemResult]:
    """Cut ``item`` into pieces, transcribe them on ``workers`` and return one stitched result (a list of one,
    like ``WhisperWorker.transcribe``). A file that can't be decoded or a piece that fails fails the file with
    the reason; only dying workers raise (:class:`SplitError`), so the caller retries."""
    started = time.perf_counter()
    try:
        data = ray.get(payload) if isinstance(payload, ray.ObjectRef) else payload
        audio = decode_audio(data, name=item.name)
    except Exception as exc:
        return [failure(item, exc)]
    duration = audio.shape[0] / SAMPLE_RATE
    clips = speech_clips(audio, threads=len(workers))  # the workers wait for this pass: use their share of cores
    pieces = plan_pieces(duration, window_cuts(clips), piece_count(duration, len(workers), max_piece_seconds))
    cut = cut_audio(audio, pieces, clips)
    refs = [ray.put(piece) for piece in cut]
    first_speech = next((ref for ref, piece in zip(refs, cut) if piece.clips), refs[0])
    del audio, cut
    detected = detect_once(workers, first_speech, options, item.name)
    language = detected[0] if detected else None
    planned = time.perf_counter() - started
    log.info("split %s (%.0f s) into %d pieces for %d workers", item.name, duration, len(pieces), len(workers))

    # Pieces go out one per worker; each worker that finishes gets the next, so a slow or busy worker takes
    # fewer pieces and none idles while pieces wait.
    alive = list(range(len(workers)))
    waiting: deque[tuple[int, int]] = deque((index, 1) for index in range(len(pieces)))  # (piece, tries)
    pending: dict[Any, tuple[int, int, int]] = {}  # ref -> (piece, worker index, tries)

    def send(worker: int) -> None:
        index, tries = waiting.popleft()
        piece_item = WorkItem(key=f"{item.key}#{index}", name=f"{item.name} [{pieces[index].label()}]",
                              source=item.source, duration=pieces[index].seconds, attempts=item.attempts)
        ref = workers[worker].transcribe.remote([piece_item], [refs[index]], options, language)
        pending[ref] = (index, worker, tries)

    def feed_idle() -> None:
        busy = {worker for _, worker, _ in pending.values()}
        for worker in alive:
            if waiting and worker not in busy:
                send(worker)

    feed_idle()
    done: dict[int, ItemResult] = {}
    while pending:
        [ready], _ = ray.wait(list(pending), num_returns=1)
        index, worker, tries = pending.pop(ready)
        try:
            [result] = ray.get(ready)
        except RayActorError as exc:
            if worker in alive:
                alive.remove(worker)
            if not alive or tries >= PIECE_TRIES:
                raise SplitError(f"piece {pieces[index].label()} of {item.name}: its workers died ({exc})") from None
            log.warning("worker died on piece %s of %s; sending it to another", pieces[index].label(), item.name)
            waiting.appendleft((index, tries + 1))
            feed_idle()
            continue
        if not result.ok:
            return [ItemResult(key=item.key, name=item.name, attempts=item.attempts, error_type=result.error_type,
                               error=f"piece {pieces[index].label()} failed: {result.error}",
                               worker=result.worker)]
        done[index] = result
        if waiting:
            send(worker)
    transcript = stitch([(pieces[i], t) for i in sorted(done) if (t := done[i].transcript) is not None], duration)
    if detected:
        transcript.language, transcript.language_probability = detected[0], round(detected[1], 4)
    first = done[0].worker if done else {}
    pids = {r.worker.get("pid") for r in done.values()}
    return [ItemResult(key=item.key, name=item.name, transcript=transcript, audio_seconds=duration,
                       processing_seconds=time.perf_counter() - started, attempts=item.attempts,
                       worker={**first, "pieces": len(pieces), "workers_used": len(pids),
                               "plan_seconds": round(planned, 2),
                               "piece_seconds": [round(done[i].processing_seconds, 2) for i in sorted(done)]})]
