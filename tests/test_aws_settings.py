"""AWS region, profile, endpoint and credentials from ``.env`` under their standard names: the environment wins,
boto3 clients and the CLI use them, and secrets are never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayscribe import aws
from rayscribe.config.aws import AwsSettings, apply_aws_env, load_aws_settings
from rayscribe.config.queue import QueueSettings
from tests.fixtures_moto import MotoServer

NAMES = tuple(name.upper() for name in AwsSettings.model_fields)
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token"


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A working directory for a ``.env`` and no AWS_* in the environment; the environment restored after."""
    saved = dict(os.environ)
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    aws._aws_env_from_dotenv.cache_clear()
    yield tmp_path
    os.environ.clear()
    os.environ.update(saved)
    aws._aws_env_from_dotenv.cache_clear()


def test_dotenv_values_reach_boto3_and_the_environment_wins(moto: MotoServer, clean_env: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = moto.env()["AWS_ENDPOINT_URL"]
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)  # the moto fixture set them: .env must do it alone
    (clean_env / ".env").write_text(f"AWS_REGION=eu-west-1\nAWS_ENDPOINT_URL={endpoint}\n"
                                    f"AWS_ACCESS_KEY_ID=AKIAEXAMPLE12345678\nAWS_SECRET_ACCESS_KEY={SECRET}\n"
                                    "AWS_PROFILE=\n")
    sqs = aws.client("sqs", QueueSettings())
    assert sqs.meta.region_name == "eu-west-1"
    url = sqs.create_queue(QueueName="from-dotenv")["QueueUrl"]
    assert url in sqs.list_queues(QueueNamePrefix="from-dotenv")["QueueUrls"]
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-west-1" and os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET
    assert "AWS_PROFILE" not in os.environ  # an empty line in .env sets nothing


def test_environment_variables_win_over_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("AWS_DEFAULT_REGION=us-east-1\nAWS_PROFILE=from-dotenv\n"
                                    "AWS_ACCESS_KEY_ID=AKIADOTENV000000\n")
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    monkeypatch.setenv("AWS_PROFILE", "from-env")
    added = apply_aws_env()
    assert os.environ["AWS_PROFILE"] == "from-env"
    assert os.environ["AWS_DEFAULT_REGION"] == "ap-southeast-2"  # a region in the environment, by either name
    assert added == {"AWS_ACCESS_KEY_ID": "AKIADOTENV000000", "AWS_DEFAULT_REGION": "ap-southeast-2"}


def test_secrets_are_secret(clean_env: Path) -> None:
    (clean_env / ".env").write_text(f"AWS_SECRET_ACCESS_KEY={SECRET}\nAWS_SESSION_TOKEN={TOKEN}\n"
                                    "AWS_ACCESS_KEY_ID=AKIAEXAMPLE12345678\n")
    settings = load_aws_settings()
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    shown = settings.shown()
    assert shown["AWS_SECRET_ACCESS_KEY"] == shown["AWS_SESSION_TOKEN"] == "***"
    assert shown["AWS_ACCESS_KEY_ID"] == "***5678"


def test_rayscribe_settings_masks_the_secrets(clean_env: Path) -> None:
    (clean_env / ".env").write_text(f"AWS_REGION=eu-central-1\nAWS_SECRET_ACCESS_KEY={SECRET}\n"
                                    f"AWS_SESSION_TOKEN={TOKEN}\n")
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    done = subprocess.run([str(Path(sys.executable).parent / "rayscribe"), "settings"], capture_output=True,
                          text=True, timeout=120, cwd=clean_env, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "AWS_REGION=eu-central-1" in lines and "AWS_SECRET_ACCESS_KEY=***" in lines
    assert "AWS_SESSION_TOKEN=***" in lines
    assert SECRET not in done.stdout + done.stderr and TOKEN not in done.stdout + done.stderr
