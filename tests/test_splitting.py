"""Cutting one long file into pieces at the engine's window boundaries and stitching the pieces back."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.engines import TranscribeOptions
from rayscribe.splitting import (
    Piece,
    cut_audio,
    piece_count,
    plan_pieces,
    speech_clips,
    stitch,
    window_cuts,
)
from rayscribe.transcript import Segment, Transcript, Word
from tests.speech import normalize, references, require_speech, wer


@pytest.mark.parametrize(
    ("duration", "workers", "max_piece", "expected"),
    [
        (3600, 1, 300, 1),     # one worker: never split
        (100, 4, 300, 1),      # too short to be worth it
        (600, 2, 300, 6),      # three pieces per worker, to even out their speeds
        (600, 4, 300, 8),      # two per worker: three would make pieces under 60 s
        (600, 8, 300, 8),      # one per worker
        (3600, 4, 300, 12),    # no piece over 300 s, a multiple of 4
        (3600, 5, 300, 15),    # 12 rounded up to a multiple of 5
        (7200, 2, 300, 24),    # no piece over 300 s
        (200, 4, 300, 3),      # 3 pieces of >= 60 s, not 4
    ],
)
def test_piece_count(duration: float, workers: int, max_piece: float, expected: int) -> None:
    assert piece_count(duration, workers, max_piece) == expected


def test_plan_pieces_cuts_only_at_window_boundaries_balanced_by_windows() -> None:
    cuts = [float(t) for t in range(25, 600, 25)]  # 23 cuts → 24 windows
    pieces = plan_pieces(600.0, cuts, 4)
    assert [p.start for p in pieces] == [0.0, 150.0, 300.0, 450.0]
    assert pieces[-1].end == 600.0
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    assert all(p.start in (0.0, *cuts) for p in pieces)


def test_plan_pieces_with_too_few_cuts_makes_fewer_pieces() -> None:
    assert plan_pieces(300.0, [100.0], 4) == [Piece(0.0, 100.0), Piece(100.0, 300.0)]
    assert plan_pieces(300.0, [], 4) == [Piece(0.0, 300.0)]
    assert plan_pieces(300.0, [0.0, 300.0, 400.0], 2) == [Piece(0.0, 300.0)]  # cuts outside are ignored


def _segment(start: float, end: float, text: str) -> Segment:
    words = text.split()
    step = (end - start) / len(words)
    return Segment(id=0, start=start, end=end, text=" " + text,
                   words=[Word(start + i * step, start + (i + 1) * step, " " + w, 0.9) for i, w in enumerate(words)])


def test_stitch_shifts_renumbers_and_keeps_times_monotonic() -> None:
    first = Transcript([_segment(0.5, 4.0, "one two three"), _segment(5.0, 9.0, "four five")], "en", 10.0)
    # the second piece's first segment claims to start before its piece would put it behind the first piece
    second = Transcript([_segment(0.0, 3.0, "six seven"), _segment(3.0, 5.0, "eight")], "en", 8.0)
    whole = stitch([(Piece(10.0, 18.0), second), (Piece(0.0, 10.0), first)], 18.0)
    assert whole.text == "one two three four five six seven eight"
    assert [s.id for s in whole.segments] == [0, 1, 2, 3]
    assert whole.segments[2].start == 10.0 and whole.segments[3].end == 15.0
    times = [t for w in whole.words for t in (w.start, w.end)]
    assert times == sorted(times)
    assert whole.duration == 18.0 and whole.language == "en"


def test_stitch_clamps_times_that_run_past_their_piece() -> None:
    late = Transcript([_segment(8.0, 12.0, "spills over")], "en", 10.0)
    whole = stitch([(Piece(0.0, 10.0), late)], 10.0)
    assert whole.segments[0].end == 10.0 and all(w.end <= 10.0 for w in whole.words)


def test_cut_audio_copies_each_piece_with_its_speech_clips() -> None:
    audio = np.arange(10 * SAMPLE_RATE, dtype=np.float32)
    clips = [{"start": SAMPLE_RATE, "end": 3 * SAMPLE_RATE}, {"start": 5 * SAMPLE_RATE, "end": 9 * SAMPLE_RATE}]
    parts = cut_audio(audio, [Piece(0.0, 4.0), Piece(4.0, 10.0)], clips)
    assert [p.samples.shape[0] for p in parts] == [4 * SAMPLE_RATE, 6 * SAMPLE_RATE]
    assert parts[1].samples[0] == 4 * SAMPLE_RATE and parts[1].samples.flags.writeable
    # each clip goes with the piece it starts in, as an offset from that piece's start
    assert parts[0].clips == [{"start": SAMPLE_RATE, "end": 3 * SAMPLE_RATE}]
    assert parts[1].clips == [{"start": SAMPLE_RATE, "end": 5 * SAMPLE_RATE}]


def test_a_padded_clip_running_past_the_cut_keeps_its_tail() -> None:
    audio = np.arange(10 * SAMPLE_RATE, dtype=np.float32)
    # padded clips that touch: the cut falls at the second clip's start, inside the first one's padding
    clips = [{"start": SAMPLE_RATE, "end": 4 * SAMPLE_RATE + 800}, {"start": 4 * SAMPLE_RATE, "end": 9 * SAMPLE_RATE}]
    assert window_cuts(clips) == []  # both fit one 30 s window
    first, second = cut_audio(audio, [Piece(0.0, 4.0), Piece(4.0, 10.0)], clips)
    assert first.samples.shape[0] == 4 * SAMPLE_RATE + 800 and first.clips == [clips[0]]
    assert second.clips == [{"start": 0, "end": 5 * SAMPLE_RATE}]


def test_the_parallel_voice_activity_pass_agrees_with_the_serial_one() -> None:
    from jobs.harness.audio import build_long_form

    root = require_speech() / "ljspeech"
    audio, _ = build_long_form([(decode_audio(root / name), "") for name in sorted(references(str(root)))], 700)
    serial, parallel = speech_clips(audio), speech_clips(audio, threads=4)  # 4 stretches of 175 s
    # a stretch's model state starts blank: a few clips near the boundary may move, the windows stay
    assert len(set(map(str, serial)) ^ set(map(str, parallel))) <= 18  # at most 3 per boundary, each side
    assert window_cuts(parallel) == window_cuts(serial)
    short = audio[: 200 * SAMPLE_RATE]
    assert speech_clips(short, threads=4) == speech_clips(short)  # too short for two 120 s stretches


def test_window_cuts_fall_in_the_silence_or_at_the_next_clip() -> None:
    second = 16 * SAMPLE_RATE  # each clip 16 s, so every clip opens a new 30 s window
    apart = [{"start": 0, "end": second}, {"start": second + 2 * SAMPLE_RATE, "end": 3 * second}]
    assert window_cuts(apart) == [17.0]  # the middle of the 2 s pause
    touching = [{"start": 0, "end": second + 400}, {"start": second, "end": 2 * second}]
    assert window_cuts(touching) == [16.0]  # never inside the next window's first clip


@pytest.fixture(scope="module")
def long_audio() -> tuple[np.ndarray, str]:
    from jobs.harness.audio import build_long_form

    root = require_speech() / "ljspeech"
    refs = references(str(root))
    clips = [(decode_audio(root / name), text) for name, text in sorted(refs.items())]
    return build_long_form(clips, 120.0)


def test_stitched_pieces_match_the_unsplit_transcript(fw_engine, long_audio: tuple[np.ndarray, str]) -> None:
    audio, reference = long_audio
    duration = audio.shape[0] / SAMPLE_RATE
    clips = speech_clips(audio, fw_engine.vad_threads)  # as the engine finds them in the unsplit file
    pieces = plan_pieces(duration, window_cuts(clips), 3)
    assert len(pieces) == 3 and all(p.seconds >= 20 for p in pieces)
    options = TranscribeOptions()
    unsplit = fw_engine.transcribe_many([audio], options)[0]
    parts = [fw_engine.transcribe_many([p.samples], options, [p.clips])[0] for p in cut_audio(audio, pieces, clips)]
    stitched = stitch(list(zip(pieces, parts)), duration)

    # the pieces' windows are the unsplit run's windows, so the words are the same
    assert stitched.text == unsplit.text
    assert wer([reference], [stitched.text]) <= wer([reference], [unsplit.text]) + 0.002
    starts = [w.start for w in stitched.words]
    assert starts == sorted(starts) and stitched.words[-1].end <= duration
    # at every seam the words on both sides run on exactly as in the unsplit transcript: none lost or doubled
    whole_text = normalize(unsplit.text)
    for piece in pieces[1:]:
        before = [w.word for w in stitched.words if w.end <= piece.start][-3:]
        after = [w.word for w in stitched.words if w.start >= piece.start][:3]
        assert normalize("".join(before + after)) in whole_text, (piece, before, after)

