from __future__ import annotations

import pytest

from rayscribe.config.checks import OUTPUT_FORMATS
from rayscribe.config.settings import load_settings
from rayscribe.errors import SettingsError


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYSCRIBE_MODEL", raising=False)  # tests/conftest.py sets the fast tiny.en
    monkeypatch.delenv("RAYSCRIBE_DETECT_MODEL", raising=False)
    s = load_settings()
    assert s.model == "base" and s.detect_model == "base" and s.english_model is None and s.task == "transcribe"
    assert s.backend == "faster-whisper"
    assert s.device == "auto"
    assert s.output_formats == ["txt", "srt", "vtt", "json"]


def test_environment_and_comma_separated_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSCRIBE_OUTPUT_FORMATS", "srt, vtt,srt")
    monkeypatch.setenv("RAYSCRIBE_BATCH_SIZE", "16")
    monkeypatch.setenv("RAYSCRIBE_LANGUAGE", "DE")
    s = load_settings()
    assert s.output_formats == ["srt", "vtt"]
    assert s.batch_size == 16
    assert s.language == "de"


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("RAYSCRIBE_BEAM_SIZE=2\nRAYSCRIBE_WORKERS=3\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.beam_size, s.workers) == (2, 3)


def test_overrides_win_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSCRIBE_MODEL", "/models/x")
    assert load_settings(model="base", language=None).model == "base"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("DEVICE", "gpu", ["RAYSCRIBE_DEVICE", "'auto'", "'cpu'", "'cuda'"]),
        ("BACKEND", "whisper.cpp", ["RAYSCRIBE_BACKEND", "faster-whisper", "whisperx"]),
        ("OUTPUT_FORMATS", "srt,docx", ["RAYSCRIBE_OUTPUT_FORMATS", "docx", *OUTPUT_FORMATS]),
        ("COMPUTE_TYPE", "fp8", ["RAYSCRIBE_COMPUTE_TYPE", "fp8", "int8", "float16"]),
        ("BATCH_SIZE", "0", ["RAYSCRIBE_BATCH_SIZE", "greater than or equal to 1"]),
        ("GPU_PER_WORKER", "-0.5", ["RAYSCRIBE_GPU_PER_WORKER", "greater than or equal to 0"]),
        ("WORKERS", "many", ["RAYSCRIBE_WORKERS", "integer"]),
        ("LANGUAGE", "english!", ["RAYSCRIBE_LANGUAGE", "ISO 639-1"]),
        ("LOG_LEVEL", "LOUD", ["RAYSCRIBE_LOG_LEVEL", "'DEBUG'"]),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv(f"RAYSCRIBE_{key}", value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    for fragment in expected:
        assert fragment in str(info.value)


def test_env_template_documents_every_setting() -> None:
    from pathlib import Path

    from rayscribe.config.settings import Settings

    template = (Path(__file__).resolve().parents[1] / ".env.template").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in template.splitlines() if "=" in line}
    missing = [f"RAYSCRIBE_{name.upper()}" for name in Settings.model_fields
               if f"RAYSCRIBE_{name.upper()}" not in documented]
    assert not missing, f".env.template lacks {missing}"
