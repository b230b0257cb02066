"""One long file across many workers: cut at voice-activity boundaries, transcribe the pieces, stitch them back.

Where to cut: the faster-whisper engine decodes a file as ≤ 30 s windows of Silero-VAD speech clips, grouped
greedily from the start. Cutting between two of *those* windows means each piece starts exactly where an unsplit
run would start a window, so the pieces' windows are the unsplit run's windows and no word can straddle a seam:
nothing is lost or said twice. Pieces are balanced by window count (the decoding work), not by
length, and the piece count is a multiple of the worker count so no worker idles at the end.

The voice-activity pass runs once, in the coordinator: each piece travels with its share of the speech clips
(:class:`SpeechPiece`), so the worker decodes exactly the windows the unsplit run would and skips its own pass.

Stitching shifts every segment and word by its piece's start, renumbers segments and keeps times monotonic.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
from faster_whisper import vad
from faster_whisper.vad import VadOptions, get_speech_timestamps

from rayscribe.audio import SAMPLE_RATE
from rayscribe.transcript import Segment, Transcript, Word

WINDOW_SECONDS = 30.0  # the Whisper window; the engine groups speech clips up to this much per window
# The engine finds speech with these options too (`speech_clips`), so cuts and windows agree.
VAD = VadOptions(max_speech_duration_s=WINDOW_SECONDS, min_silence_duration_ms=160)
MIN_PIECE_SECONDS = 60.0  # shorter pieces cost more in per-call overhead than they win in parallelism
PIECES_PER_WORKER = 3
SILERO_FRAME = 512  # samples the Silero model scores at a time


@dataclass(frozen=True)
class Piece:
    """A stretch of the file, in seconds from its start."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def label(self) -> str:
        return f"{self.start:.1f}-{self.end:.1f}s"


@dataclass(frozen=True)
class SpeechPiece:
    """A piece's samples and the speech clips the voice-activity pass found in it (sample offsets from the
    piece's start), so the worker need not look for them again."""

    samples: np.ndarray
    clips: list[dict]


def speech_clips(audio: np.ndarray, threads: int = 1) -> list[dict]:
    """Silero-VAD speech clips (``{"start", "end"}`` in samples) with the engine's own options.

    With ``threads`` > 1 the model scores up to that many stretches of a long file at once (ONNX Runtime
    releases the GIL), and faster-whisper's own post-processing turns the scores into clips. The model's
    memory then starts afresh at each stretch (as at the start of any file), so a few clips may move or merge.
    This pass is what stays serial when one file is split, so it sets how far splitting can scale.
    """
    stretches = min(threads, MAX_VAD_STRETCHES, audio.shape[0] // PARALLEL_VAD_MIN_SAMPLES)
    if stretches <= 1:
        return get_speech_timestamps(audio, VAD)
    with _VAD_PATCH_LOCK:
        real = vad.get_vad_model
        vad.get_vad_model = lambda: _StretchedVad(real(), stretches)
        try:
            return get_speech_timestamps(audio, VAD)
        finally:
            vad.get_vad_model = real


def fill_speech_clips(audios: list[np.ndarray], speech: list[list[dict] | None] | None,
                      threads: int = 1) -> list[list[dict]]:
    """Each file's speech clips: those a caller found already (a split piece's), else found here."""
    known = speech or [None] * len(audios)
    return [found if found is not None else speech_clips(audio, threads) for audio, found in zip(audios, known)]


PARALLEL_VAD_MIN_SAMPLES = 120 * SAMPLE_RATE  # shorter stretches are not worth a thread
# Each stretch starts from a blank model state, which moves a few clips. Up to 4 stretches left the windows of
# 10 and 30 min files unchanged; 8 changed 12 of the 64 window boundaries of the 30 min file.
MAX_VAD_STRETCHES = 4
# faster-whisper's get_speech_timestamps takes no model argument: it calls vad.get_vad_model() (cached). The
# parallel pass swaps that lookup for the length of one call; the lock keeps two calls from swapping at once.
_VAD_PATCH_LOCK = threading.Lock()


class _StretchedVad:
    """Scores audio like ``SileroVADModel.__call__`` (padded to whole 512-sample frames, one probability per
    frame), stretch by stretch in threads."""

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], stretches: int) -> None:
        self.model, self.stretches = model, stretches

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        frames = audio.shape[0] // SILERO_FRAME
        edges = [round(k * frames / self.stretches) * SILERO_FRAME for k in range(self.stretches + 1)]
        parts = [audio[a:b] for a, b in pairwise(edges) if b > a]
        with ThreadPoolExecutor(len(parts), thread_name_prefix="vad") as pool:
            return np.concatenate(list(pool.map(self.model, parts)), axis=0)


def window_cuts(clips: list[dict]) -> list[float]:
    """Times (s) between the engine's consecutive decoding windows, given the file's speech ``clips``: the
    middle of the silence between the last clip of one window and the first of the next, or the next window's
    first clip's start where padded clips touch or overlap. These are the only places a piece may start."""
    limit = WINDOW_SECONDS * SAMPLE_RATE
    cuts: list[float] = []
    used = 0
    previous_end = None
    for clip in clips:
        length = clip["end"] - clip["start"]
        if previous_end is not None and used + length > limit:
            cuts.append(min((previous_end + clip["start"]) // 2, clip["start"]) / SAMPLE_RATE)
            used = 0
        used += length
        previous_end = clip["end"]
    return cuts


def piece_count(duration: float, workers: int, max_piece_seconds: float) -> int:
    """How many pieces: none over ``max_piece_seconds``; up to PIECES_PER_WORKER per worker while pieces stay
    ≥ MIN_PIECE_SECONDS (workers take the next piece as they finish, so several each even out pieces that
    decode at different speeds); a multiple of the worker count so the last round keeps every worker busy."""
    if workers <= 1 or duration < 2 * MIN_PIECE_SECONDS:
        return 1
    if duration < workers * MIN_PIECE_SECONDS:
        return int(duration // MIN_PIECE_SECONDS)  # fewer pieces than workers, none too short
    rounds = min(PIECES_PER_WORKER, int(duration // (workers * MIN_PIECE_SECONDS)))
    wanted = max(math.ceil(duration / max_piece_seconds), rounds * workers)
    return math.ceil(wanted / workers) * workers


def plan_pieces(duration: float, cuts: list[float], pieces: int) -> list[Piece]:
    """Split ``[0, duration]`` into at most ``pieces`` parts at some of ``cuts``, balanced by the number of
    decoding windows in each. Fewer pieces come back when there are fewer cuts (little speech, one long
    monologue without pauses)."""
    cuts = sorted(c for c in cuts if 0.0 < c < duration)
    windows = len(cuts) + 1
    pieces = max(1, min(pieces, windows))
    chosen = sorted({cuts[round(k * windows / pieces) - 1] for k in range(1, pieces)})
    edges = [0.0, *chosen, duration]
    return [Piece(a, b) for a, b in pairwise(edges) if b > a]


def cut_audio(audio: np.ndarray, pieces: list[Piece], clips: list[dict]) -> list[SpeechPiece]:
    """Each piece's samples (copies, so they can travel and be written to) with the speech clips that start
    inside it, shifted to the piece's start. A padded clip may run a little past the cut (into the next
    window's first clip): the piece's samples then run on to its end, so every window hears exactly the audio
    it hears in an unsplit run."""
    out = []
    for p in pieces:
        first, last = round(p.start * SAMPLE_RATE), round(p.end * SAMPLE_RATE)
        inside = [c for c in clips if first <= c["start"] < last]
        end = max([last, *(c["end"] for c in inside)])
        out.append(SpeechPiece(np.array(audio[first:end], dtype=np.float32),
                               [{"start": c["start"] - first, "end": c["end"] - first} for c in inside]))
    return out


def stitch(parts: list[tuple[Piece, Transcript]], duration: float) -> Transcript:
    """One transcript from the pieces' transcripts: times shifted by each piece's start, segments renumbered,
    and every time kept inside its piece and after the previous one so timestamps never run backwards."""
    segments: list[Segment] = []
    floor = 0.0
    for piece, transcript in sorted(parts, key=lambda part: part[0].start):
        for segment in transcript.segments:
            start = _clamp(piece.start + segment.start, floor, piece.end)
            end = _clamp(piece.start + segment.end, start, piece.end)
            words: list[Word] = []
            word_floor = start
            for word in segment.words:
                w_start = _clamp(piece.start + word.start, word_floor, end)
                w_end = _clamp(piece.start + word.end, w_start, end)
                words.append(replace(word, start=w_start, end=w_end))
                word_floor = w_start
            segments.append(replace(segment, id=len(segments), start=start, end=end, words=words))
            floor = start
    first = parts[0][1] if parts else None
    language = first.language if first else "en"
    probability = first.language_probability if first else 1.0
    models = dict.fromkeys(t.model for _, t in sorted(parts, key=lambda part: part[0].start) if t.model)
    return Transcript(segments=segments, language=language, duration=duration, language_probability=probability,
                      model="+".join(models) or None)


def _clamp(value: float, low: float, high: float) -> float:
    return round(min(max(value, low), max(low, high)), 3)
