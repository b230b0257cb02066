"""The Voxtral engine: the pure policy helpers (windows, pieces, GPU memory), the settings, and the real
save → load → processor → generate path on a tiny random-weight model on CPU. Its words are random, so the tests
assert structure, limits and errors, never the text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.config.voxtral import DEFAULT_VOXTRAL_MODEL, VoxtralSettings, load_voxtral_settings
from rayscribe.engines.voxtral_engine import (
    GB,
    AnalysisRequestError,
    AnalyzeOptions,
    audio_tokens,
    gpu_memory_problem,
    memory_need_bytes,
    plan_pieces,
    window_seconds,
)
from rayscribe.errors import ModelNotAvailableError, SettingsError

JFK = Path(__file__).resolve().parents[1] / "samples" / "jfk.mp3"

pytestmark = pytest.mark.voxtral


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return decode_audio(JFK)


# -- pure policy -------------------------------------------------------------------------------------------


def test_audio_tokens_are_whole_30s_windows() -> None:
    assert audio_tokens(1) == audio_tokens(30) == 375
    assert audio_tokens(30.01) == 750


def test_window_is_the_setting_or_the_context_whichever_is_less() -> None:
    assert window_seconds(131072, 512, 1800) == 1800  # the real model: the setting decides
    assert window_seconds(1024, 8, 1800) == 60  # tiny context: two 30 s windows fit
    assert window_seconds(1024, 700, 1800) == 0


def test_pieces_policy() -> None:
    assert plan_pieces(20, "summary", 60) == [(0.0, 20)]
    assert plan_pieces(130, "transcribe", 60) == [(0.0, 60), (60, 120), (120, 130)]
    with pytest.raises(AnalysisRequestError, match=r"130.0 s long; a summary covers at most 60 s"):
        plan_pieces(130, "summary", 60)
    with pytest.raises(AnalysisRequestError, match="RAYSCRIBE_VOXTRAL_MAX_NEW_TOKENS"):
        plan_pieces(10, "question", 0)


def test_gpu_memory_check_is_a_pure_function() -> None:
    need = memory_need_bytes(4_676_000_000, 2, 1.5)
    assert 10.0 < need / GB < 10.3
    assert gpu_memory_problem(int(15 * GB), need, int(16 * GB)) is None
    message = gpu_memory_problem(int(6 * GB), need, int(16 * GB), "cuda:0")
    assert message is not None
    assert "needs about 10.2 GB" in message and "only 6.0 GB of 16.0 GB is free" in message
    assert "RAYSCRIBE_VOXTRAL_DEVICE=cpu" in message


def test_real_model_size_matches_the_readme_budget() -> None:
    """Voxtral-Mini-3B's default config, counted on the meta device: about 4.7 B parameters, 8.7 GiB in fp16."""
    pytest.importorskip("transformers")
    from transformers import VoxtralConfig

    from rayscribe.engines.voxtral_engine import count_parameters

    params = count_parameters(VoxtralConfig(audio_token_id=24))
    assert 4.5e9 < params < 4.8e9
    assert 9.0e9 < params * 2 < 9.6e9  # bytes in float16: docs/voxtral.md's "about 9.5 GB" (decimal)


# -- settings ----------------------------------------------------------------------------------------------


def test_settings_defaults_and_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_voxtral_settings()
    assert settings.voxtral_model == DEFAULT_VOXTRAL_MODEL and not settings.voxtral_enabled
    with pytest.raises(SettingsError, match="must not exceed 1"):
        load_voxtral_settings(hybrid_whisper_gpu=0.7, hybrid_voxtral_gpu=0.5)
    monkeypatch.setenv("RAYSCRIBE_VOXTRAL_LANGUAGE", "english")
    with pytest.raises(SettingsError, match="RAYSCRIBE_VOXTRAL_LANGUAGE"):
        load_voxtral_settings()


def test_env_template_documents_every_voxtral_setting() -> None:
    template = (Path(__file__).resolve().parents[1] / ".env.template").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in template.splitlines() if "=" in line}
    keys = [f"RAYSCRIBE_{name.upper()}" for name in VoxtralSettings.model_fields]
    missing = [key for key in keys if key not in documented]
    assert not missing


# -- loading -----------------------------------------------------------------------------------------------


def test_default_model_offline_fails_with_a_clear_message() -> None:
    pytest.importorskip("transformers")
    from rayscribe.engines.voxtral_engine import VoxtralEngine

    with pytest.raises(ModelNotAvailableError) as info:
        VoxtralEngine(load_voxtral_settings(voxtral_device="cpu"))
    message = str(info.value)
    assert DEFAULT_VOXTRAL_MODEL in message and "HF_HUB_OFFLINE" in message
    assert "RAYSCRIBE_VOXTRAL_MODEL" in message and "Traceback" not in message


def test_cuda_without_a_gpu_is_refused(tiny_voxtral: Path) -> None:
    from rayscribe.engines.voxtral_engine import VoxtralEngine

    with pytest.raises(ModelNotAvailableError, match="RAYSCRIBE_VOXTRAL_DEVICE=cuda"):
        VoxtralEngine(load_voxtral_settings(voxtral_model=str(tiny_voxtral), voxtral_device="cuda"))


def test_the_tiny_model_folder_is_a_real_voxtral(tiny_voxtral: Path, voxtral_engine: Any) -> None:
    assert {p.name for p in tiny_voxtral.iterdir()} >= {"config.json", "model.safetensors", "tekken.json",
                                                         "preprocessor_config.json"}
    info = voxtral_engine.describe()
    assert info["device"] == "cpu" and info["dtype"] == "float32" and info["model"] == "tiny-voxtral"
    assert voxtral_engine.processor.tokenizer.convert_ids_to_tokens(24) == "[AUDIO]"


# -- answering ---------------------------------------------------------------------------------------------


def test_summary_structure_and_token_limit(voxtral_engine: Any, jfk: np.ndarray) -> None:
    result = voxtral_engine.analyze(jfk, AnalyzeOptions(task="summary", max_new_tokens=5))
    data = result.to_dict()
    assert data["task"] == "summary" and data["model"] == "tiny-voxtral" and data["pieces"] == 1
    assert data["prompt"] == voxtral_engine.settings.voxtral_summary_prompt
    assert isinstance(data["text"], str)
    assert 1 <= data["output_tokens"] <= 5
    assert data["truncated"] == (data["output_tokens"] == 5)
    assert data["input_tokens"] > 375  # one 30 s window of audio tokens plus the instruction
    assert data["audio_seconds"] == pytest.approx(jfk.shape[0] / SAMPLE_RATE, abs=0.01)
    assert set(data["timings"]) == {"prepare_seconds", "generate_seconds", "total_seconds"}
    again = voxtral_engine.analyze(jfk, AnalyzeOptions(task="summary", max_new_tokens=5))
    assert again.text == result.text  # greedy decoding repeats itself


def test_question_and_transcribe(voxtral_engine: Any, jfk: np.ndarray) -> None:
    answer = voxtral_engine.analyze(jfk, AnalyzeOptions(task="question", prompt="Who is speaking?",
                                                        max_new_tokens=3))
    assert answer.prompt == "Who is speaking?" and answer.output_tokens <= 3
    transcript = voxtral_engine.analyze(jfk, AnalyzeOptions(task="transcribe", max_new_tokens=3, language="en"))
    assert transcript.prompt is None and transcript.output_tokens <= 3 and transcript.pieces == 1


def test_sampling_with_temperature_runs(voxtral_engine: Any, jfk: np.ndarray) -> None:
    result = voxtral_engine.analyze(jfk[: SAMPLE_RATE * 2], AnalyzeOptions(max_new_tokens=2, temperature=0.8))
    assert result.output_tokens <= 2


def test_long_audio_policy(voxtral_engine: Any, jfk: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voxtral_engine, "settings",
                        voxtral_engine.settings.model_copy(update={"voxtral_max_audio_seconds": 5.0}))
    with pytest.raises(AnalysisRequestError, match=r"11.0 s long; a summary covers at most 5 s"):
        voxtral_engine.analyze(jfk, AnalyzeOptions(task="summary"))
    pieces = voxtral_engine.analyze(jfk, AnalyzeOptions(task="transcribe", max_new_tokens=2))
    assert pieces.pieces == 3 and pieces.output_tokens <= 6


@pytest.mark.parametrize(("options", "match"), [
    (AnalyzeOptions(task="question"), "needs a prompt"),
    (AnalyzeOptions(task="question", prompt="   "), "needs a prompt"),
    (AnalyzeOptions(task="poem"), "unknown task 'poem'"),  # type: ignore[arg-type]
    (AnalyzeOptions(max_new_tokens=2000), "no room for even 30 s"),
])
def test_bad_requests(voxtral_engine: Any, jfk: np.ndarray, options: AnalyzeOptions, match: str) -> None:
    with pytest.raises(AnalysisRequestError, match=match):
        voxtral_engine.analyze(jfk, options)


def test_empty_audio_is_refused(voxtral_engine: Any) -> None:
    with pytest.raises(AnalysisRequestError, match="non-empty"):
        voxtral_engine.analyze(np.zeros(0, dtype=np.float32))
