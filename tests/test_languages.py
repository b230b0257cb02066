"""Languages at the engine: routing English to an English model and the rest to the multilingual one, the
English-only model's fallback and failure, translation, and files of one language decoded together.

A handful of real clips (two English samples, German, French, Mandarin) on the bundled models; the whole
multilingual dev set runs through the batch and queue paths in tests/test_languages_paths.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.harness.multilingual import error_rate, multilingual_dir
from rayscribe.audio import decode_audio
from rayscribe.config.settings import load_settings
from rayscribe.engines import TranscribeOptions, create_engine
from rayscribe.engines.routing import RoutingEngine
from rayscribe.errors import LanguageNotSupportedError, SettingsError
from rayscribe.formatters import format_transcript
from tests.speech import REPO, SAMPLES, references

PICKED = {"jfk": SAMPLES / "jfk.mp3", "lj": SAMPLES / "LJ001-0001.wav", "de": "de/fleurs_de_001.ogg",
          "fr": "fr/picovoice_cheetah_fr.wav", "zh": "zh/aishell_BAC009S0724W0121.wav"}
LANGUAGE = {"jfk": "en", "lj": "en", "de": "de", "fr": "fr", "zh": "zh"}


@pytest.fixture(scope="module")
def audios() -> dict[str, np.ndarray]:
    root = multilingual_dir()
    if not (root / "de" / "transcripts.tsv").exists():
        pytest.skip(f"multilingual clips not found at {root} (set RAYSCRIBE_MULTILINGUAL_DIR)")
    return {name: decode_audio(path if isinstance(path, Path) else root / path) for name, path in PICKED.items()}


def _engine(**settings: Any) -> RoutingEngine:
    engine = create_engine(load_settings(cpu_threads=2, **settings))
    assert isinstance(engine, RoutingEngine)
    return engine


def _spy(engine: Any, calls: list[tuple[str, str | None, int]]) -> None:
    """Record each inner call (model, language, files) of a routed engine."""
    original = engine.transcribe_many

    def recording(audios: list[np.ndarray], options: TranscribeOptions, speech: Any = None) -> Any:
        calls.append((engine.model_name, options.language, len(audios)))
        return original(audios, options, speech)

    engine.transcribe_many = recording


@pytest.fixture(scope="module")
def routed(audios: dict[str, np.ndarray]) -> tuple[RoutingEngine, dict[str, Any], list[tuple[str, str | None, int]]]:
    """base for every language, tiny.en for English (RAYSCRIBE_ENGLISH_MODEL): the five clips in one call."""
    engine = _engine(model="base", english_model="tiny.en", detect_model="base")
    calls: list[tuple[str, str | None, int]] = []
    assert engine.english is not None
    _spy(engine.main, calls)
    _spy(engine.english, calls)
    transcripts = engine.transcribe_many(list(audios.values()), TranscribeOptions(beam_size=1))
    return engine, dict(zip(audios, transcripts)), calls


def test_english_goes_to_the_english_model_and_the_rest_to_the_multilingual_one(routed) -> None:
    engine, transcripts, calls = routed
    assert engine.describe()["models"] == {"main": "base", "english": "tiny.en"}
    for name, transcript in transcripts.items():
        assert transcript.language == LANGUAGE[name], (name, transcript.language)
        assert transcript.model == ("tiny.en" if LANGUAGE[name] == "en" else "base"), name
        assert 0.5 < transcript.language_probability <= 1.0
        assert json.loads(format_transcript(transcript, "json"))["model"] == transcript.model
    english = references(str(SAMPLES))
    assert error_rate("en", [english["jfk.mp3"], english["LJ001-0001.wav"]],
                      [transcripts["jfk"].text, transcripts["lj"].text]) < 0.15
    assert error_rate("de", ["er griff auch alles an was ins wasser kam selbst ein großer dinosaurier wie der t rex "
                             "war ihm nicht gewachsen"], [transcripts["de"].text]) < 0.3
    # one call per (model, language): files of one language are decoded (and packed) together
    assert sorted(calls) == [("base", "de", 1), ("base", "fr", 1), ("base", "zh", 1), ("tiny.en", "en", 2)]


def test_an_english_only_model_hands_other_languages_to_the_multilingual_one(audios) -> None:
    """RAYSCRIBE_MODEL=tiny.en with the default RAYSCRIBE_DETECT_MODEL=base: never English text for German."""
    engine = _engine(model="tiny.en", detect_model="base")
    names = ["jfk", "de"]
    jfk, german = engine.transcribe_many([audios[n] for n in names], TranscribeOptions(beam_size=1))
    assert (jfk.language, jfk.model) == ("en", "tiny.en")
    assert (german.language, german.model) == ("de", "base") and "dinosaurier" in german.text.lower()
    assert engine.describe()["models"] == {"main": "tiny.en", "multilingual": "base"}


def test_an_english_only_model_alone_fails_a_non_english_file_naming_the_language(audios) -> None:
    engine = _engine(model="tiny.en", detect_model=None)
    with pytest.raises(LanguageNotSupportedError) as info:
        engine.transcribe_many([audios["de"]], TranscribeOptions(language="de"))
    assert "German (de)" in str(info.value) and "tiny.en is English-only" in str(info.value)
    # nothing to detect with: taken for English, as the settings documentation says
    assert engine.transcribe(audios["jfk"], TranscribeOptions(beam_size=1)).model == "tiny.en"


@pytest.fixture(scope="module")
def base_alone() -> RoutingEngine:
    return _engine(model="base", detect_model="base")


def test_translation_writes_english(audios, base_alone: RoutingEngine) -> None:
    engine = base_alone
    translated = engine.transcribe(audios["de"], TranscribeOptions(task="translate", beam_size=1))
    assert translated.language == "de" and translated.model == "base"
    words = set(translated.text.lower().replace(",", " ").replace(".", " ").split())
    assert {"water", "dinosaur"} & words and "dinosaurier" not in words, translated.text


def test_an_english_only_model_cannot_translate_clear_error_and_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="translate needs a multilingual model"):
        load_settings(model="tiny.en", detect_model="", task="translate")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "rayscribe"), "transcribe", str(SAMPLES / "jfk.mp3"), "--out",
         str(tmp_path), "--task", "translate", "--model", "tiny.en"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "RAYSCRIBE_DETECT_MODEL": ""})
    assert proc.returncode == 2 and "translate needs a multilingual model" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = subprocess.run([str(Path(sys.executable).parent / "rayscribe"), "transcribe", str(SAMPLES), "--out",
                          str(tmp_path), "--task", "summarise"], capture_output=True, text=True, timeout=120,
                         cwd=REPO, env=dict(os.environ))
    assert bad.returncode == 2 and "RAYSCRIBE_TASK" in bad.stderr and "translate" in bad.stderr


def test_silence_has_no_language_to_detect(base_alone: RoutingEngine) -> None:
    """No speech: nothing decides the language, so it is reported with probability 0 (not a guess at 1.0)."""
    silent = base_alone.transcribe(np.zeros(16000 * 3, dtype=np.float32), TranscribeOptions())
    assert silent.text == "" and silent.language_probability == 0.0 and silent.model == "base"
