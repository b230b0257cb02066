"""The default backend on real speech with the bundled tiny.en model."""

from __future__ import annotations

import numpy as np
import pytest

from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.engines import TranscribeOptions
from rayscribe.errors import ModelNotAvailableError
from tests.speech import references, require_speech, wer


@pytest.fixture(scope="module")
def clips() -> list[tuple[str, np.ndarray, str]]:
    root = require_speech()
    out = []
    for folder in ("librivox", "jfk"):
        refs = references(str(root / folder))
        for name in sorted(refs):
            if name.endswith(".wav"):
                out.append((name, decode_audio(root / folder / name), refs[name]))
    return out


def test_transcribes_real_speech_accurately(fw_engine, clips) -> None:
    options = TranscribeOptions(word_timestamps=True)
    hyps = [fw_engine.transcribe(audio, options).text for _, audio, _ in clips]
    assert wer([r for *_, r in clips], hyps) < 0.12


def test_segments_and_words_are_ordered_and_inside_the_audio(fw_engine, clips) -> None:
    _, audio, _ = clips[-1]  # jfk, 11 s
    t = fw_engine.transcribe(audio, TranscribeOptions())
    assert t.language == "en"
    assert t.duration == pytest.approx(audio.shape[0] / SAMPLE_RATE)
    assert t.segments and t.words
    previous = 0.0
    for seg in t.segments:
        assert 0.0 <= seg.start <= seg.end <= t.duration + 0.05
        for w in seg.words:
            assert seg.start - 0.01 <= w.start <= w.end <= seg.end + 0.01
            assert w.start >= previous - 0.01
            assert 0.0 <= w.probability <= 1.0
            previous = w.start


def test_many_files_in_one_call_match_one_by_one(fw_engine, clips) -> None:
    """Packing short files into shared windows must not cost accuracy, and keeps files apart."""
    options = TranscribeOptions()
    together = fw_engine.transcribe_many([a for _, a, _ in clips], options)
    alone = [fw_engine.transcribe(a, options) for _, a, _ in clips]
    refs = [r for *_, r in clips]
    assert len(together) == len(clips)
    assert wer(refs, [t.text for t in together]) <= wer(refs, [t.text for t in alone]) + 0.02
    for (_, audio, _), t in zip(clips, together):
        assert t.duration == pytest.approx(audio.shape[0] / SAMPLE_RATE)
        assert all(0.0 <= w.start <= w.end <= t.duration for w in t.words)
    assert "fellow americans" in together[-1].text.lower()
    assert "fellow americans" not in together[0].text.lower()


@pytest.mark.parametrize("order", ["jfk first", "reversed", "rotated"])
def test_no_packed_file_loses_its_speech_whatever_the_order(fw_engine, clips, order: str) -> None:
    """A shared window can end early or drift so that a file's words land in a neighbour; that file is then
    decoded alone. With jfk first, tiny.en ended the window after jfk and two files came back empty."""
    picked = {"jfk first": [clips[-1], *clips[:-1]], "reversed": clips[::-1],
              "rotated": clips[2:] + clips[:2]}[order]
    together = fw_engine.transcribe_many([a for _, a, _ in picked], TranscribeOptions())
    for (name, _, ref), t in zip(picked, together):
        assert t.words, f"{name} came back without words"
        assert wer([ref], [t.text]) < 0.3, (name, t.text)


def test_lost_speech_is_told_by_words_against_voice_activity() -> None:
    from rayscribe.engines.faster_whisper_engine import _lost_speech
    from rayscribe.transcript import Segment, Transcript, Word

    speech = [{"start": 1 * SAMPLE_RATE, "end": 4 * SAMPLE_RATE}, {"start": 5 * SAMPLE_RATE, "end": 9 * SAMPLE_RATE}]

    def heard(start: float, end: float) -> Transcript:
        words = [Word(start=start, end=start + 0.3, word=" so", probability=0.9),
                 Word(start=end - 0.3, end=end, word=" on", probability=0.9)]
        return Transcript(segments=[Segment(id=0, start=start, end=end, text="so on", words=words)],
                          language="en", duration=10.0)

    assert not _lost_speech(heard(1.2, 8.6), speech)
    assert _lost_speech(heard(1.2, 4.0), speech)  # the second stretch of speech is missing
    assert _lost_speech(heard(5.2, 8.8), speech)  # the first is
    assert _lost_speech(Transcript(segments=[], language="en", duration=10.0), speech)
    assert not _lost_speech(Transcript(segments=[], language="en", duration=10.0), [])  # silence: nothing lost


def test_without_word_timestamps_files_are_batched_not_packed(fw_engine, clips) -> None:
    options = TranscribeOptions(word_timestamps=False)
    together = fw_engine.transcribe_many([a for _, a, _ in clips[:3]], options)
    assert all(t.segments and not t.words for t in together)
    assert wer([r for *_, r in clips[:3]], [t.text for t in together]) < 0.15


def test_silence_gives_an_empty_transcript(fw_engine) -> None:
    silence = np.zeros(SAMPLE_RATE * 3, dtype=np.float32)
    t = fw_engine.transcribe(silence, TranscribeOptions())
    assert t.segments == [] and t.text == ""
    assert t.duration == pytest.approx(3.0)


def test_missing_model_folder_is_a_clear_error(tmp_path) -> None:
    from rayscribe.config.settings import load_settings
    from rayscribe.engines import create_engine

    (tmp_path / "notamodel").mkdir()
    with pytest.raises(ModelNotAvailableError, match="not a CTranslate2"):
        create_engine(load_settings(model=str(tmp_path / "notamodel")))


def test_unknown_hub_model_offline_is_a_clear_error() -> None:
    from rayscribe.config.settings import load_settings
    from rayscribe.engines import create_engine

    with pytest.raises(ModelNotAvailableError, match="RAYSCRIBE_MODEL"):
        create_engine(load_settings(model="large-v3"))
