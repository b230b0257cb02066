"""Settings of the queue path (SQS, S3, webhooks), read like the main settings: ``RAYSCRIBE_*`` or ``.env``.

A second class rather than more fields on :class:`rayscribe.config.settings.Settings`, so the batch and HTTP paths never
see AWS names. Bucket names have no defaults (S3 names are global, so any default would be someone's account);
commands that need one say which variable to set. AWS credentials, region and endpoint are *not* settings here:
boto3 reads the standard ``AWS_*`` variables itself (from ``.env`` too: :mod:`rayscribe.config.aws`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rayscribe.config.base import RayscribeSettings, read_settings
from rayscribe.errors import SettingsError


class QueueSettings(RayscribeSettings):
    """Queue-path configuration; field ``x`` is read from ``RAYSCRIBE_X``."""

    # Queues
    queue_name: str = Field("rayscribe-jobs", min_length=1, max_length=80)
    high_priority_queue_name: str = Field("rayscribe-jobs-high", min_length=1, max_length=80)
    dlq_name: str = Field("rayscribe-jobs-dlq", min_length=1, max_length=80)
    max_receive_count: int = Field(3, ge=1, le=1000)
    visibility_timeout: int = Field(300, ge=10, le=43200)
    heartbeat_seconds: float = Field(60.0, gt=0)
    wait_seconds: int = Field(20, ge=0, le=20)
    receive_batch: int = Field(10, ge=1, le=10)
    retry_delay_seconds: int = Field(30, ge=0, le=43200)

    # Buckets and default locations
    input_bucket: str | None = None
    output_bucket: str | None = None
    input_prefix: str = "uploads/"
    output_prefix: str = "transcripts/"

    # AWS client behaviour
    aws_retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    aws_max_attempts: int = Field(5, ge=1, le=20)

    # Completion webhook
    webhook_timeout: float = Field(10.0, gt=0, le=300)
    webhook_retries: int = Field(3, ge=0, le=10)
    webhook_backoff_seconds: float = Field(1.0, ge=0, le=60)

    # Whether a job message may name local paths (single-machine use only; anyone who can send to the queue could
    # otherwise make workers read and write files on their disks)
    allow_local_paths: bool = False

    # Health endpoint of `rayscribe worker` (GET /health on this port, every interface; 0: off) and how often it
    # reads the queue depths it exports as gauges
    health_port: int = Field(8080, ge=0, le=65535)
    queue_gauge_seconds: float = Field(10.0, ge=1, le=3600)

    @field_validator("input_bucket", "output_bucket", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("input_bucket", "output_bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("s3://") or "/" in value:
            raise ValueError("give the bucket name only (no s3:// and no slashes), e.g. my-transcripts")
        if not 3 <= len(value) <= 63 or value != value.lower():
            raise ValueError("an S3 bucket name has 3-63 lower-case letters, digits, dots and hyphens")
        return value

    @field_validator("queue_name", "high_priority_queue_name", "dlq_name")
    @classmethod
    def _check_queue(cls, value: str) -> str:
        if not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError("an SQS queue name holds only letters, digits, hyphens and underscores")
        return value

    @field_validator("input_prefix", "output_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        value = value.strip("/")
        return f"{value}/" if value else ""

    @model_validator(mode="after")
    def _check_heartbeat(self) -> QueueSettings:
        if self.heartbeat_seconds >= self.visibility_timeout:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds:g}) must be shorter than visibility_timeout "
                f"({self.visibility_timeout}); a third of it is a good choice"
            )
        if len({self.queue_name, self.high_priority_queue_name, self.dlq_name}) < 3:
            raise ValueError("queue_name, high_priority_queue_name and dlq_name must be three different names")
        return self

    def require_bucket(self, which: Literal["input", "output"]) -> str:
        """The input or output bucket, or a :class:`SettingsError` saying which variable to set."""
        value = self.input_bucket if which == "input" else self.output_bucket
        if value is None:
            raise SettingsError(f"RAYSCRIBE_{which.upper()}_BUCKET is not set; set it (in the environment or "
                                f".env) to the S3 bucket for {which}s")
        return value


def load_queue_settings(**overrides: Any) -> QueueSettings:
    """Read the queue settings from the environment and ``.env``; overrides (e.g. CLI flags) win."""
    return read_settings(QueueSettings, overrides)
