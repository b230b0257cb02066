"""The WhisperX backend on real speech, fully offline: bundled tiny.en, the pyannote VAD shipped in the
whisperx package, and alignment / diarization models that are absent (they must degrade with a clear warning).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

# Before anything imports huggingface_hub or pyannote: never touch the hub, never send pyannote metrics.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

import numpy as np
import pytest

pytest.importorskip("whisperx")

from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.config.settings import Settings
from rayscribe.engines import TranscribeOptions, create_engine
from rayscribe.errors import ModelNotAvailableError
from rayscribe.transcript import Transcript
from tests.speech import normalize, references, require_speech
from tests.speech import wer as corpus_wer

pytestmark = pytest.mark.whisperx

SPEECH = require_speech()  # skips the module when the shared clips are missing
JFK = SPEECH / "jfk" / "jfk.wav"
JFK_TEXT = references(str(SPEECH / "jfk"))["jfk.wav"]
LIBRIVOX = SPEECH / "librivox"
LIBRIVOX_CLIPS = [f"sense_and_sensibility_01_austen_64kb-{n}.wav" for n in ("0870", "0920")]
ALIGN_MODEL_EN = "WAV2VEC2_ASR_BASE_960H"  # whisperx's default English alignment model (torchaudio)
DIARIZE_MODEL = "pyannote/speaker-diarization-community-1"


def wer(reference: str, hypothesis: str) -> float:
    return corpus_wer([reference], [hypothesis])


def assert_well_formed(transcript: Transcript, audio: np.ndarray) -> None:
    duration = audio.shape[0] / SAMPLE_RATE
    assert transcript.duration == pytest.approx(duration)
    assert transcript.language == "en"
    assert transcript.segments, "no segments"
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    for segment in transcript.segments:
        assert 0.0 <= segment.start <= segment.end <= duration + 1e-6
        assert segment.text == segment.text.strip() and segment.text


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty model cache: alignment and diarization models are surely absent, whatever this host holds."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def engine(models_dir: Path):
    # One thread: with two, torch's oneDNN LSTM (the pyannote VAD) slows down badly whenever the host's cores
    # are shared (first call 10-80 s instead of ~5 s on a busy 2-core test host).
    settings = Settings(
        backend="whisperx", model="tiny.en", device="cpu", compute_type="int8", cpu_threads=1,
        whisperx_align=True, diarize=True, model_dir=str(models_dir), _env_file=None,  # type: ignore[call-arg]
    )
    return create_engine(settings)


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return decode_audio(JFK)


@pytest.fixture
def options(engine) -> TranscribeOptions:
    return TranscribeOptions.from_settings(engine.settings)


def test_engine_describes_itself(engine):
    info = engine.describe()
    assert info["backend"] == "whisperx"
    assert info["model"] == "tiny.en"
    assert info["device"] == "cpu" and info["compute_type"] == "int8"
    assert engine.load_seconds > 0


def test_jfk_is_transcribed_accurately(engine, jfk, options):
    transcript = engine.transcribe(jfk, options)
    assert_well_formed(transcript, jfk)
    assert wer(JFK_TEXT, transcript.text) < 0.15, transcript.text
    assert 0.0 <= transcript.segments[0].start < 1.5
    assert transcript.segments[-1].end > 9.0


def test_read_only_arrays_from_the_object_store_are_accepted(engine, jfk, options):
    frozen = jfk.copy()
    frozen.setflags(write=False)
    transcript = engine.transcribe(frozen, options)
    assert wer(JFK_TEXT, transcript.text) < 0.15
    assert not frozen.flags.writeable


def test_several_files_in_one_call(engine, options):
    references_ = references(str(LIBRIVOX))
    audios = [decode_audio(LIBRIVOX / name) for name in LIBRIVOX_CLIPS]
    transcripts = engine.transcribe_many(audios, options)
    assert len(transcripts) == len(audios)
    for name, audio, transcript in zip(LIBRIVOX_CLIPS, audios, transcripts, strict=True):
        assert_well_formed(transcript, audio)
        assert wer(references_[name], transcript.text) < 0.25, (name, transcript.text)


def test_silence_gives_an_empty_transcript(engine, options):
    silence = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    transcript = engine.transcribe(silence, options)
    assert transcript.segments == []
    assert transcript.text == ""
    assert transcript.duration == pytest.approx(2.0)


def test_missing_alignment_and_diarization_models_warn_once_and_keep_the_transcript(
    engine, jfk, options, caplog
):
    engine._unavailable.clear()  # forget what earlier tests already learnt, so the warnings show up here
    with caplog.at_level(logging.WARNING, logger="rayscribe"):
        transcripts = engine.transcribe_many([jfk, jfk], options)
    for transcript in transcripts:
        assert wer(JFK_TEXT, transcript.text) < 0.15
        assert transcript.words == []  # no word timestamps without the alignment model
        assert all(s.speaker is None for s in transcript.segments)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    align = [m for m in warnings if ALIGN_MODEL_EN in m]
    diarize = [m for m in warnings if DIARIZE_MODEL in m]
    assert len(align) == 1, warnings  # cached: not retried for the second file
    assert len(diarize) == 1, warnings
    assert "'en'" in align[0] and "offline" in align[0] and "RAYSCRIBE_WHISPERX_ALIGN=false" in align[0]
    assert "RAYSCRIBE_DIARIZE=false" in diarize[0] and "RAYSCRIBE_HF_TOKEN" in diarize[0]


def test_check_models_reports_the_missing_models(engine, models_dir):
    messages = engine.check_models()
    assert len(messages) == 2, messages
    assert ALIGN_MODEL_EN in messages[0] and str(models_dir) in messages[0]
    assert DIARIZE_MODEL in messages[1]


def test_check_models_is_quiet_for_disabled_stages(engine, monkeypatch):
    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(update={"whisperx_align": False,
                                                                              "diarize": False}))
    assert engine.check_models() == []


@pytest.fixture(scope="module")
def local_align_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight wav2vec2 CTC model in a folder: real load and align code, meaningless weights."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5}
    vocab.update({c: 6 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|", do_lower_case=True)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    return folder


@pytest.fixture
def punkt_tab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An (empty, valid) English punkt_tab model on NLTK's search path, as ``nltk.download`` would leave."""
    import nltk

    english_dir = tmp_path / "tokenizers" / "punkt_tab" / "english"
    english_dir.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (english_dir / name).write_text("")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])
    return tmp_path


def test_a_local_alignment_model_gives_word_timestamps(
    engine, jfk, options, local_align_model, punkt_tab, monkeypatch, caplog
):
    settings = engine.settings.model_copy(update={"align_model": str(local_align_model), "diarize": False})
    monkeypatch.setattr(engine, "settings", settings)
    monkeypatch.setattr(engine, "_align_models", {})
    monkeypatch.setattr(engine, "_unavailable", {})
    assert engine.check_models() == []
    with caplog.at_level(logging.WARNING, logger="rayscribe"):
        transcript = engine.transcribe(jfk, options)
    assert not [r for r in caplog.records if r.name.startswith("rayscribe") and r.levelno >= logging.WARNING]
    assert_well_formed(transcript, jfk)
    assert wer(JFK_TEXT, transcript.text) < 0.15
    words = transcript.words
    assert len(words) >= 20
    assert normalize("".join(w.word for w in words)) == normalize(transcript.text)
    duration = jfk.shape[0] / SAMPLE_RATE
    for word in words:
        assert 0.0 <= word.start <= word.end <= duration
        assert 0.0 <= word.probability <= 1.0
    for segment in transcript.segments:
        assert segment.words and segment.text.endswith(segment.words[-1].word.strip())
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_diarization_output_is_attached_to_segments(engine, jfk, options, monkeypatch):
    """Diarization itself needs a gated hub model; a stand-in pipeline feeds whisperx.assign_word_speakers."""
    import pandas as pd

    def fake_diarizer(audio: np.ndarray) -> pd.DataFrame:
        middle = audio.shape[0] / SAMPLE_RATE / 2
        return pd.DataFrame({"start": [0.0, middle], "end": [middle, 2 * middle],
                             "speaker": ["SPEAKER_00", "SPEAKER_01"]})

    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(update={"whisperx_align": False}))
    monkeypatch.setattr(engine, "_unavailable", {})
    monkeypatch.setattr(engine, "_diarizer", fake_diarizer)
    transcript = engine.transcribe(jfk, options)
    assert wer(JFK_TEXT, transcript.text) < 0.15
    assert {s.speaker for s in transcript.segments} <= {"SPEAKER_00", "SPEAKER_01"}
    assert all(s.speaker for s in transcript.segments)


def test_aligned_and_diarized_output_is_converted(engine):
    """The conversion of what whisperx.align / assign_word_speakers return (they cannot run offline here)."""
    raw = [
        {"start": 4.0, "end": 5.5, "text": " second one", "speaker": "SPEAKER_01",
         "words": [{"word": "second", "start": 4.0, "end": 4.6, "score": 0.8, "speaker": "SPEAKER_01"},
                   {"word": "one", "start": float("nan"), "end": float("nan")}]},
        {"start": 0.5, "end": 2.0, "text": "First words.", "avg_logprob": -0.2, "speaker": "SPEAKER_00",
         "words": [{"word": "First", "start": 0.5, "end": 0.9, "score": 0.9},
                   {"word": "words.", "start": 1.0, "end": 2.5, "score": 0.7}]},
        {"start": 6.0, "end": 6.5, "text": "  "},
    ]
    transcript = engine._to_transcript(raw, "en", 6.0)
    assert [s.text for s in transcript.segments] == ["First words.", "second one"]
    assert [s.id for s in transcript.segments] == [0, 1]
    first, second = transcript.segments
    assert first.speaker == "SPEAKER_00" and second.speaker == "SPEAKER_01"
    assert first.avg_logprob == pytest.approx(-0.2)
    assert [w.word for w in first.words] == [" First", " words."]
    assert [w.probability for w in first.words] == [0.9, 0.7]
    assert first.words[1].end == 2.5
    assert all(w.end <= 6.0 for w in transcript.words)
    unaligned = second.words[1]  # no times: it takes the previous word's end
    assert (unaligned.start, unaligned.end, unaligned.probability) == (4.6, 4.6, 0.0)
    assert "".join(w.word for w in first.words).strip() == first.text


def test_a_missing_model_folder_is_reported(tmp_path):
    missing = tmp_path / "no-such-model"
    settings = Settings(backend="whisperx", model=str(missing), device="cpu", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ModelNotAvailableError) as info:
        create_engine(settings)
    assert str(missing) in str(info.value)
    assert "RAYSCRIBE_MODEL" in str(info.value)


def test_an_unknown_model_name_is_reported_without_network():
    settings = Settings(backend="whisperx", model="no-such-whisper", device="cpu", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ModelNotAvailableError) as info:
        create_engine(settings)
    assert "'no-such-whisper'" in str(info.value)
    assert "RAYSCRIBE_MODEL" in str(info.value)
