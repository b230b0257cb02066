"""Formatters: each format parses back with its own reader, cues are split and clamped, files are atomic."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import pytest
import srt
import webvtt

from rayscribe import formatters
from rayscribe.config.checks import OUTPUT_FORMATS
from rayscribe.formatters import (
    EXTENSIONS,
    FORMATS,
    LANGUAGE_NAMES,
    MAX_CUE_CHARS,
    MAX_CUE_SECONDS,
    format_transcript,
    output_paths,
    outputs_exist,
    subtitle_cues,
    write_outputs,
)
from rayscribe.transcript import Segment, Transcript, Word

MS = 0.001  # timestamps are written to the millisecond


def words_for(text: str, start: float, end: float, *, leading_space: bool = True) -> list[Word]:
    """Evenly spaced word timings for ``text`` over ``[start, end]``."""
    tokens = text.split()
    step = (end - start) / len(tokens)
    return [
        Word(
            start=round(start + i * step, 3),
            end=round(start + (i + 1) * step - 0.05, 3),
            word=(" " if leading_space else "") + tok,
            probability=0.9,
        )
        for i, tok in enumerate(tokens)
    ]


def seg(i: int, start: float, end: float, text: str, *, words: bool = True, **kw: object) -> Segment:
    return Segment(
        id=i, start=start, end=end, text=" " + text if text.strip() else text,
        words=words_for(text, start, end) if words and text.strip() else [], **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def basic() -> Transcript:
    """Three spoken segments and an empty one in the middle."""
    return Transcript(
        segments=[
            seg(0, 0.0, 2.5, "Hello world."),
            seg(1, 2.5, 5.0, "This is the second segment."),
            seg(2, 5.0, 5.5, "   ", avg_logprob=-1.5, no_speech_prob=0.9),
            seg(3, 6.0, 9.0, "And a third one.", avg_logprob=-0.3, compression_ratio=1.2, temperature=0.2),
        ],
        language="en",
        duration=10.0,
    )


@pytest.fixture
def unicode_transcript() -> Transcript:
    return Transcript(
        segments=[
            seg(0, 0.0, 2.0, "Grüße aus Köln — naïve café."),
            seg(1, 2.0, 4.0, "日本語のテキスト 😀 «quotes»", words=False),
        ],
        language="de",
        duration=4.5,
    )


LONG_TEXT = (
    "So this is a rather long stretch of speech that goes on and on, well past what anyone could read "
    "in a single subtitle. It should be cut into several cues at word boundaries so readers keep up."
)


@pytest.fixture
def long_transcript() -> Transcript:
    return Transcript(
        segments=[seg(0, 1.0, 25.0, LONG_TEXT), seg(1, 25.0, 27.0, "Short ending.")],
        language="en",
        duration=30.0,
    )


@pytest.fixture
def overrun() -> Transcript:
    """Overlapping segments and a last segment that ends after the audio does."""
    return Transcript(
        segments=[
            seg(0, 0.0, 3.2, "First part here."),
            seg(1, 2.8, 4.0, "Overlaps the first."),  # starts before the previous one ends
            seg(2, 4.5, 6.7, "Runs past the end."),  # duration is 5.0
        ],
        language="en",
        duration=5.0,
    )


# ------------------------------------------------------------------------------------------ helpers


def vtt_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    subs = list(srt.parse(text))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    return [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subs]


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    assert text.startswith("WEBVTT\n")
    return [
        (vtt_seconds(c.start), vtt_seconds(c.end), html.unescape(c.text))
        for c in webvtt.from_string(text).captions
    ]


def flat(text: str) -> str:
    return " ".join(text.split())


def check_cue_times(cues: list[tuple[float, float, str]], duration: float) -> None:
    prev_end = 0.0
    for start, end, _ in cues:
        assert 0.0 <= start <= end <= duration + 1e-9
        assert start >= prev_end - 1e-9, "cues overlap or go backwards"
        prev_end = end


def both(transcript: Transcript) -> list[list[tuple[float, float, str]]]:
    return [
        parse_srt(format_transcript(transcript, "srt")),
        parse_vtt(format_transcript(transcript, "vtt")),
    ]


# -------------------------------------------------------------------------------------------- tests


def test_formats_and_extensions() -> None:
    assert FORMATS == OUTPUT_FORMATS
    assert set(EXTENSIONS) == set(FORMATS)
    assert EXTENSIONS["verbose_json"] == ".verbose.json"
    assert len(set(EXTENSIONS.values())) == len(EXTENSIONS)


def test_language_names_cover_whisper() -> None:
    tokenizer = pytest.importorskip("faster_whisper.tokenizer")
    missing = set(tokenizer._LANGUAGE_CODES) - set(LANGUAGE_NAMES)
    assert not missing
    assert all(name == name.lower() for name in LANGUAGE_NAMES.values())


def test_unknown_format_raises(basic: Transcript, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="allowed: txt, srt, vtt, json, verbose_json"):
        format_transcript(basic, "docx")
    with pytest.raises(ValueError, match="'SRT'"):
        output_paths(tmp_path, "a", ["txt", "SRT"])
    with pytest.raises(ValueError):
        write_outputs(basic, tmp_path / "out", "a", ["txt", "pdf"])
    assert not (tmp_path / "out").exists()  # nothing written when a format is bad


def test_txt(basic: Transcript) -> None:
    assert format_transcript(basic, "txt") == (
        "Hello world.\nThis is the second segment.\nAnd a third one.\n"
    )


def test_srt_parses_back(basic: Transcript) -> None:
    text = format_transcript(basic, "srt")
    assert "00:00:02,500 --> 00:00:05,000" in text
    cues = parse_srt(text)
    assert [flat(c[2]) for c in cues] == ["Hello world.", "This is the second segment.", "And a third one."]
    assert [(c[0], c[1]) for c in cues] == [(0.0, 2.5), (2.5, 5.0), (6.0, 9.0)]
    check_cue_times(cues, basic.duration)


def test_vtt_parses_back(basic: Transcript, tmp_path: Path) -> None:
    text = format_transcript(basic, "vtt")
    assert text.startswith("WEBVTT")
    assert "00:00:06.000 --> 00:00:09.000" in text
    path = tmp_path / "a.vtt"
    path.write_text(text, encoding="utf-8")
    captions = webvtt.read(str(path)).captions
    assert len(captions) == 3
    cues = parse_vtt(text)
    assert [flat(c[2]) for c in cues] == ["Hello world.", "This is the second segment.", "And a third one."]
    assert cues == parse_srt(format_transcript(basic, "srt"))
    check_cue_times(cues, basic.duration)


def test_unicode_survives_every_format(unicode_transcript: Transcript) -> None:
    expected = ["Grüße aus Köln — naïve café.", "日本語のテキスト 😀 «quotes»"]
    for cues in both(unicode_transcript):
        assert [flat(c[2]) for c in cues] == expected
    assert format_transcript(unicode_transcript, "txt").splitlines() == expected
    for fmt in ("json", "verbose_json"):
        out = format_transcript(unicode_transcript, fmt)
        assert "Grüße" in out and "😀" in out  # ensure_ascii=False
        assert "\\u" not in out


def test_vtt_escapes_markup_and_arrows() -> None:
    t = Transcript([seg(0, 0.0, 2.0, "AT&T <3 a --> b", words=False)], language="en", duration=2.0)
    vtt_text = format_transcript(t, "vtt")
    assert "AT&amp;T &lt;3" in vtt_text
    assert "-->" not in vtt_text.split("\n", 3)[-1]  # only in the timing line
    [(_, _, vtt_cue)] = parse_vtt(vtt_text)
    [(_, _, srt_cue)] = parse_srt(format_transcript(t, "srt"))
    assert vtt_cue == srt_cue == "AT&T <3 a -> b"


def test_long_segment_is_split_at_word_boundaries(long_transcript: Transcript) -> None:
    long_segment = long_transcript.segments[0]
    for cues in both(long_transcript):
        check_cue_times(cues, long_transcript.duration)
        assert flat(cues[-1][2]) == "Short ending."
        split = cues[:-1]
        assert len(split) >= 4  # 24 s and ~200 characters
        assert " ".join(flat(c[2]) for c in split) == flat(LONG_TEXT)
        for start, end, text in split:
            assert end - start <= MAX_CUE_SECONDS + MS
            assert len(flat(text)) <= MAX_CUE_CHARS
            assert all(len(line) <= MAX_CUE_CHARS // 2 + 10 for line in text.splitlines())
        # each word sits inside the cue that shows it
        words = iter(long_segment.words)
        for start, end, text in split:
            for token in flat(text).split():
                word = next(words)
                assert word.word.strip() == token
                assert start - MS <= word.start and word.end <= end + MS
        assert next(words, None) is None


def test_split_prefers_sentence_ends() -> None:
    # one word a second: seven words fill a cue, but the sentence ends after the fifth
    text = "alpha beta gamma delta epsilon. zeta eta theta iota kappa lambda mu"
    t = Transcript([seg(0, 0.0, 12.0, text)], language="en", duration=12.0)
    assert [c.text for c in subtitle_cues(t)] == [
        "alpha beta gamma delta epsilon.", "zeta eta theta iota kappa lambda mu",
    ]


def test_long_segment_without_words_stays_one_cue() -> None:
    t = Transcript([seg(0, 0.0, 20.0, LONG_TEXT, words=False)], language="en", duration=20.0)
    for cues in both(t):
        assert len(cues) == 1
        assert flat(cues[0][2]) == flat(LONG_TEXT)
        assert len(cues[0][2].splitlines()) > 2  # wrapped onto lines, not one 200-character line


def test_whisperx_style_words_without_spaces_are_joined_with_spaces() -> None:
    text = " ".join(f"word{i}" for i in range(30))
    words = words_for(text, 0.0, 20.0, leading_space=False)
    segment = Segment(id=0, start=0.0, end=20.0, text=text, words=words)
    cues = subtitle_cues(Transcript([segment], language="en", duration=20.0))
    assert len(cues) > 1
    assert " ".join(flat(c.text) for c in cues) == text


def test_times_are_clamped_and_monotonic(overrun: Transcript) -> None:
    for cues in both(overrun):
        check_cue_times(cues, overrun.duration)
        assert len(cues) == 3
        assert cues[1][0] == pytest.approx(3.2)  # pushed past the end of the overlapping first cue
        assert cues[-1][1] == pytest.approx(5.0)  # clamped to the duration
        assert flat(cues[-1][2]) == "Runs past the end."


def test_cue_wholly_after_the_end_is_merged_not_lost() -> None:
    t = Transcript(
        [seg(0, 0.0, 2.0, "Spoken."), seg(1, 3.0, 4.0, "Ghost after the end.")],
        language="en",
        duration=2.5,
    )
    for cues in both(t):
        check_cue_times(cues, t.duration)
        assert len(cues) == 1
        assert flat(cues[0][2]) == "Spoken. Ghost after the end."


def test_speaker_labels() -> None:
    t = Transcript(
        [seg(0, 0.0, 1.0, "Hi.", speaker="SPEAKER_00"), seg(1, 1.0, 2.0, "Hello.", speaker="SPEAKER_01")],
        language="en",
        duration=2.0,
    )
    assert format_transcript(t, "txt") == "[SPEAKER_00]: Hi.\n[SPEAKER_01]: Hello.\n"
    for cues in both(t):
        assert [c[2] for c in cues] == ["[SPEAKER_00]: Hi.", "[SPEAKER_01]: Hello."]


def test_json_round_trips(basic: Transcript) -> None:
    data = json.loads(format_transcript(basic, "json"))
    assert "metadata" not in data
    assert data["text"] == basic.text
    assert Transcript.from_dict(data) == basic

    meta = {"source": "s3://bucket/ünï.wav", "model": "tiny.en"}
    data = json.loads(format_transcript(basic, "json", metadata=meta))
    assert data["metadata"] == meta
    assert Transcript.from_dict(data) == basic


def test_verbose_json_has_openais_shape(basic: Transcript) -> None:
    data = json.loads(format_transcript(basic, "verbose_json"))
    assert set(data) == {"task", "language", "language_probability", "duration", "text", "segments", "words"}
    assert data["task"] == "transcribe"
    assert data["language"] == "english"
    assert data["duration"] == 10.0
    assert data["text"] == basic.text
    keys = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
            "compression_ratio", "no_speech_prob"}
    assert all(set(s) == keys for s in data["segments"])
    assert [s["id"] for s in data["segments"]] == [0, 1, 2, 3]
    last = data["segments"][3]
    assert (last["start"], last["end"], last["tokens"]) == (6.0, 9.0, [])
    assert (last["avg_logprob"], last["compression_ratio"], last["temperature"]) == (-0.3, 1.2, 0.2)
    assert [w["word"] for w in data["words"]][:3] == ["Hello", "world.", "This"]
    assert all(set(w) == {"word", "start", "end"} for w in data["words"])
    assert len(data["words"]) == len(basic.words)


@pytest.mark.parametrize(("code", "name"), [("en", "english"), ("de", "german"), ("haw", "hawaiian"),
                                            ("yue", "cantonese"), ("xx", "xx")])
def test_verbose_json_language_names(code: str, name: str) -> None:
    t = Transcript([], language=code, duration=0.0)
    assert json.loads(format_transcript(t, "verbose_json"))["language"] == name


def test_output_paths(tmp_path: Path) -> None:
    paths = output_paths(tmp_path, "talk", ["srt", "verbose_json", "json", "srt"])
    assert paths == {
        "srt": tmp_path / "talk.srt",
        "verbose_json": tmp_path / "talk.verbose.json",
        "json": tmp_path / "talk.json",
    }


def test_write_outputs_and_outputs_exist(basic: Transcript, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "out"
    assert not outputs_exist(out, "talk", FORMATS)
    paths = write_outputs(basic, out, "talk", FORMATS, metadata={"k": "v"})
    assert paths == output_paths(out, "talk", FORMATS)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"talk{EXTENSIONS[f]}" for f in FORMATS)
    for fmt, path in paths.items():
        assert path.read_text(encoding="utf-8") == format_transcript(basic, fmt, metadata={"k": "v"})
    assert outputs_exist(out, "talk", FORMATS)
    assert not outputs_exist(out, "other", FORMATS)

    paths["srt"].write_text("")  # an empty file does not count
    assert not outputs_exist(out, "talk", FORMATS)
    assert outputs_exist(out, "talk", ["txt", "json"])
    paths["srt"].unlink()
    assert not outputs_exist(out, "talk", FORMATS)


def test_write_outputs_replaces_and_leaves_no_temp_files(
    basic: Transcript, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "talk.txt").write_text("old\n")
    write_outputs(basic, tmp_path, "talk", ["txt"])
    assert (tmp_path / "talk.txt").read_text() == format_transcript(basic, "txt")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(formatters.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_outputs(basic, tmp_path, "talk", ["txt", "json"])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.txt"]  # no temp file, nothing half-written
    assert (tmp_path / "talk.txt").read_text() == format_transcript(basic, "txt")


def test_written_files_are_not_private(basic: Transcript, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        [path] = write_outputs(basic, tmp_path, "talk", ["txt"]).values()
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_silent_transcript_still_counts_as_written(tmp_path: Path) -> None:
    silent = Transcript([seg(0, 0.0, 1.0, "  ")], language="en", duration=3.0)
    assert both(silent) == [[], []]
    assert format_transcript(silent, "txt").strip() == ""
    write_outputs(silent, tmp_path, "quiet", FORMATS)
    assert outputs_exist(tmp_path, "quiet", FORMATS)


def test_timestamps_have_hours_and_milliseconds() -> None:
    t = Transcript([seg(0, 3723.25, 3725.5, "Late.")], language="en", duration=4000.0)
    assert re.search(r"^01:02:03,250 --> 01:02:05,500$", format_transcript(t, "srt"), re.M)
    assert re.search(r"^01:02:03\.250 --> 01:02:05\.500$", format_transcript(t, "vtt"), re.M)


def test_write_outputs_creates_sub_folders_of_the_stem(tmp_path) -> None:
    from rayscribe.formatters import outputs_exist, write_outputs
    from rayscribe.transcript import Segment, Transcript

    t = Transcript(segments=[Segment(id=0, start=0.0, end=1.0, text="hi")], language="en", duration=1.0)
    paths = write_outputs(t, tmp_path, "talks/day1/intro", ["txt", "srt"])
    assert paths["txt"] == tmp_path / "talks" / "day1" / "intro.txt"
    assert outputs_exist(tmp_path, "talks/day1/intro", ["txt", "srt"])


def test_json_outputs_report_the_language_its_probability_and_the_model() -> None:
    """A routed transcript names the model that made it; both JSON formats carry the detection's probability."""
    t = Transcript([seg(0, 0.0, 2.0, "Guten Tag.")], language="de", duration=2.0, language_probability=0.93,
                   model="base")
    data = json.loads(format_transcript(t, "json"))
    assert (data["language"], data["language_probability"], data["model"]) == ("de", 0.93, "base")
    assert Transcript.from_dict(data) == t
    verbose = json.loads(format_transcript(t, "verbose_json"))
    assert (verbose["language"], verbose["language_probability"], verbose["model"]) == ("german", 0.93, "base")
    unrouted = json.loads(format_transcript(Transcript([], language="en", duration=0.0), "verbose_json"))
    assert "model" not in unrouted
