"""The HTTP API's settings: defaults, parsing, secrets kept out of text, and the documents that list them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rayscribe.config.serve import ServeSettings, load_serve_settings
from rayscribe.errors import SettingsError

REPO = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    s = load_serve_settings()
    assert (s.serve_host, s.serve_port) == ("127.0.0.1", 8000)
    assert s.key_list() == []
    assert s.served_models == ["whisper-1"]
    assert s.max_upload_bytes == 25 * 1024 * 1024
    assert (s.min_replicas, s.max_replicas, s.max_batch_size) == (1, 2, 8)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSCRIBE_API_KEYS", "sk-one, sk-two,,")
    monkeypatch.setenv("RAYSCRIBE_SERVED_MODELS", "whisper-1, large-v3,whisper-1")
    monkeypatch.setenv("RAYSCRIBE_GPU_PER_REPLICA", "0.25")
    s = load_serve_settings()
    assert s.key_list() == ["sk-one", "sk-two"]
    assert s.served_models == ["whisper-1", "large-v3"]
    assert s.gpu_per_replica == 0.25


def test_keys_never_show_in_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSCRIBE_API_KEYS", "sk-very-secret")
    s = load_serve_settings()
    assert "sk-very-secret" not in repr(s) and "sk-very-secret" not in str(s.model_dump())
    monkeypatch.setenv("RAYSCRIBE_MAX_REPLICAS", "0")
    with pytest.raises(SettingsError) as info:
        load_serve_settings()
    assert "sk-very-secret" not in str(info.value) and "RAYSCRIBE_MAX_REPLICAS" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("SERVE_PORT", "http", "RAYSCRIBE_SERVE_PORT"), ("MAX_UPLOAD_MB", "0", "greater than 0"),
     ("MAX_QUEUED_REQUESTS", "-2", "RAYSCRIBE_MAX_QUEUED_REQUESTS"), ("MIN_REPLICAS", "5", "above")],
)
def test_bad_values_name_the_key(monkeypatch: pytest.MonkeyPatch, key: str, value: str, expected: str) -> None:
    monkeypatch.setenv(f"RAYSCRIBE_{key}", value)
    with pytest.raises(SettingsError) as info:
        load_serve_settings()
    assert expected in str(info.value)


def test_env_template_documents_every_serve_setting() -> None:
    template = (REPO / ".env.template").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in template.splitlines() if "=" in line}
    missing = [f"RAYSCRIBE_{name.upper()}" for name in ServeSettings.model_fields
               if f"RAYSCRIBE_{name.upper()}" not in documented]
    assert not missing, f".env.template lacks {missing}"


def test_config_yaml_is_the_one_the_defaults_give() -> None:
    from serve.app import serve_config

    assert yaml.safe_load((REPO / "serve" / "config.yaml").read_text()) == serve_config(load_serve_settings())
