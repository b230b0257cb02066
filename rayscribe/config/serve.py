"""Settings of the HTTP API (the Ray Serve app in ``serve/``): environment variables prefixed ``RAYSCRIBE_``.

A second settings class beside :class:`rayscribe.config.settings.Settings` so the core engine settings stay free of
HTTP concerns; both read the same environment and ``.env``. The API keys are a :class:`~pydantic.SecretStr`:
they never appear in a repr, a log line or ``rayscribe settings``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from rayscribe.config.base import RayscribeSettings, read_settings, split_commas


class ServeSettings(RayscribeSettings):
    """Configuration of the HTTP API; field ``x`` is read from ``RAYSCRIBE_X``."""

    # Where it listens
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(8000, ge=1, le=65535)
    # What fronts the ingress on an embedded cluster: Serve's Python proxy, or HAProxy (experimental in Ray) with
    # Serve's throughput mode (gRPC between the deployments)
    serve_proxy: Literal["serve", "haproxy"] = "serve"

    # Protection
    api_keys: SecretStr | None = Field(None, repr=False)
    max_upload_mb: float = Field(25.0, gt=0, le=4096)

    # Names clients may pass as ``model``; the engine's own model name is always served too.
    served_models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["whisper-1"])

    # Replicas of the model deployment and how they scale
    min_replicas: int = Field(1, ge=0, le=1024)
    max_replicas: int = Field(2, ge=1, le=1024)
    target_ongoing_requests: float = Field(8.0, gt=0)
    max_ongoing_requests: int = Field(16, ge=1, le=4096)
    max_queued_requests: int = Field(64, ge=-1)
    retry_after_s: int = Field(1, ge=0, le=3600)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    look_back_period_s: float = Field(30.0, gt=0)
    gpu_per_replica: float = Field(0.5, ge=0, le=8)
    cpus_per_replica: float = Field(1.0, gt=0, le=256)

    # Dynamic batching of concurrent requests in one replica
    max_batch_size: int = Field(8, ge=1, le=256)
    batch_wait_ms: float = Field(20.0, ge=0, le=10_000)

    # The FastAPI ingress in front of the model
    ingress_cpus: float = Field(0.1, ge=0, le=64)
    ingress_max_ongoing_requests: int = Field(256, ge=1, le=100_000)

    # The web page at ``/`` (serve/web/): upload, live transcript, downloads; false answers 404 there
    web_ui: bool = True

    @field_validator("api_keys", mode="before")
    @classmethod
    def _empty_keys_are_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip(" ,"):
            return None
        return value

    @field_validator("served_models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("served_models")
    @classmethod
    def _dedupe_models(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(v.strip() for v in value if v.strip()))

    @model_validator(mode="after")
    def _check_replicas(self) -> ServeSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"RAYSCRIBE_MIN_REPLICAS={self.min_replicas} is above RAYSCRIBE_MAX_REPLICAS={self.max_replicas}"
            )
        return self

    def key_list(self) -> list[str]:
        """The accepted API keys; empty means the API is open."""
        if self.api_keys is None:
            return []
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def load_serve_settings(**overrides: Any) -> ServeSettings:
    """Read the HTTP API settings from the environment and ``.env``; overrides (e.g. CLI flags) win."""
    return read_settings(ServeSettings, overrides)
