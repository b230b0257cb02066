"""The queue path's settings: documented defaults, bad values named with what is allowed, every key templated."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayscribe.config.queue import QueueSettings, load_queue_settings
from rayscribe.errors import SettingsError


def test_defaults() -> None:
    s = load_queue_settings()
    assert (s.max_receive_count, s.wait_seconds, s.receive_batch, s.visibility_timeout) == (3, 20, 10, 300)
    assert s.input_bucket is None and s.output_bucket is None  # no account-specific defaults
    with pytest.raises(SettingsError, match="RAYSCRIBE_OUTPUT_BUCKET is not set"):
        s.require_bucket("output")


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"RAYSCRIBE_WAIT_SECONDS": "30"}, ["RAYSCRIBE_WAIT_SECONDS", "less than or equal to 20"]),
        ({"RAYSCRIBE_RECEIVE_BATCH": "11"}, ["RAYSCRIBE_RECEIVE_BATCH", "10"]),
        ({"RAYSCRIBE_OUTPUT_BUCKET": "s3://x/y"}, ["RAYSCRIBE_OUTPUT_BUCKET", "bucket name only"]),
        ({"RAYSCRIBE_AWS_RETRY_MODE": "yolo"}, ["RAYSCRIBE_AWS_RETRY_MODE", "'adaptive'"]),
        ({"RAYSCRIBE_QUEUE_NAME": "a b"}, ["RAYSCRIBE_QUEUE_NAME", "letters, digits"]),
        ({"RAYSCRIBE_HEARTBEAT_SECONDS": "400"}, ["heartbeat_seconds", "visibility_timeout"]),
    ],
)
def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragments: list[str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_queue_settings()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_env_template_documents_every_queue_setting() -> None:
    template = (Path(__file__).resolve().parents[1] / ".env.template").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in template.splitlines() if "=" in line}
    keys = [f"RAYSCRIBE_{name.upper()}" for name in QueueSettings.model_fields]
    missing = [key for key in keys if key not in documented]
    assert not missing, f".env.template lacks {missing}"
