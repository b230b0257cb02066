"""AWS region, profile, endpoint and credentials under their standard names (``AWS_REGION``, ``AWS_PROFILE``,
``AWS_ACCESS_KEY_ID``...), read from the environment or ``.env`` like every other setting.

boto3 reads only the environment (and ``~/.aws``), so :func:`apply_aws_env` copies the values found in ``.env``
into this process's environment, never over a variable that is already set (environment variables win). It runs
before every boto3 client is made (:mod:`rayscribe.aws`) and before a command joins or starts Ray, so Ray workers
get them too (:func:`actors.cluster.worker_env` forwards ``AWS_*``). The secrets are ``SecretStr``: they are
never printed (``rayscribe settings`` masks them, a validation error leaves their value out).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rayscribe.config.base import read_settings

MASK = "***"


class AwsSettings(BaseSettings):
    """The standard ``AWS_*`` variables boto3 and the AWS CLI read; field ``aws_x`` is ``AWS_X``."""

    model_config = SettingsConfigDict(env_prefix="", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    aws_region: str | None = None
    aws_default_region: str | None = None
    aws_profile: str | None = None
    aws_endpoint_url: str | None = None
    aws_endpoint_url_sqs: str | None = None
    aws_endpoint_url_s3: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = Field(None, repr=False)
    aws_session_token: SecretStr | None = Field(None, repr=False)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def region(self) -> str | None:
        """The region boto3 will use: ``AWS_DEFAULT_REGION`` first (what botocore reads), then ``AWS_REGION``."""
        return self.aws_default_region or self.aws_region

    def environ(self) -> dict[str, str]:
        """The variables with a value, secrets revealed: for ``os.environ`` only, never for printing."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                out[name.upper()] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return out

    def shown(self) -> dict[str, str]:
        """The variables as ``rayscribe settings`` prints them: secrets as ``***``, the key id's last 4 only."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                text = ""
            elif isinstance(value, SecretStr):
                text = MASK
            elif name == "aws_access_key_id":
                text = f"{MASK}{value[-4:]}" if len(value) > 8 else MASK
            else:
                text = str(value)
            out[name.upper()] = text
        return out


def load_aws_settings() -> AwsSettings:
    """The ``AWS_*`` variables from the environment and ``.env`` (the environment wins)."""
    return read_settings(AwsSettings, {})


def apply_aws_env() -> dict[str, str]:
    """Copy the ``AWS_*`` values of ``.env`` into ``os.environ`` where the environment has none; returns the
    names and values added. A region given only as ``AWS_REGION`` is also set as ``AWS_DEFAULT_REGION``, the one
    botocore reads, unless the environment names a region itself."""
    settings = load_aws_settings()
    added: dict[str, str] = {}
    env_region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    for name, value in settings.environ().items():
        if name in ("AWS_REGION", "AWS_DEFAULT_REGION") and env_region:
            continue  # a region in the environment wins over either name in .env
        if not os.environ.get(name):
            os.environ[name] = added[name] = value
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = added["AWS_DEFAULT_REGION"] = region
    return added
