"""The languages benchmark's pure helpers: the dev set it reads and how it scores (no model, no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.bench_languages import Clip, error_rate, multilingual_clips, score


def test_the_dev_set_is_read_with_languages_and_references() -> None:
    clips = multilingual_clips()
    assert len(clips) == 26
    assert {c.language for c in clips} == {"de", "es", "fr", "it", "ja", "pt", "zh"}
    assert abs(sum(c.seconds for c in clips) - 196.8) < 0.5  # as SOURCES.md says
    assert all(c.reference and c.path.exists() for c in clips)


def test_error_rates_normalise_and_pick_words_or_characters() -> None:
    # case and punctuation do not count (the references' styles differ)
    assert error_rate("de", ["er griff alles an"], ["Er griff alles an."]) == 0.0
    assert error_rate("de", ["er griff alles an"], ["er griff nichts an"]) == pytest.approx(0.25)
    # no spaces in Chinese: one wrong character of four is 0.25, not one wrong "word"
    assert error_rate("zh", ["今天天气"], ["今天天汽"]) == pytest.approx(0.25)
    assert error_rate("en", ["Mister Smith"], ["Mr. Smith"]) == 0.0  # English normaliser


def test_score_counts_detection_failures_and_models() -> None:
    clips = [Clip(Path("/a.wav"), "de", "hallo welt", 2.0), Clip(Path("/b.wav"), "en", "hello world", 3.0)]
    outputs = {"/a.wav": {"text": "hallo welt", "language": "de", "model": "base"}}
    run = score("set", "contender", clips, 2.5, outputs)
    assert (run.files, run.failed, run.detected_right) == (2, 1, 1)
    assert run.error_rates == {"de": 0.0, "en": 1.0} and run.models == {"base": 1}
    assert run.speed == pytest.approx(2.0)
