"""Every setting rayscribe reads, in one place: environment variables prefixed ``RAYSCRIBE_`` or a ``.env`` file.

A bad value fails at start with a :class:`SettingsError` naming the variable and the allowed values, so a
misconfigured worker never starts half-way. ``.env.template`` documents each key.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rayscribe.errors import SettingsError

OUTPUT_FORMATS = ("txt", "srt", "vtt", "json", "verbose_json")
COMPUTE_TYPES = (
    "auto", "default", "int8", "int8_float16", "int8_float32", "int8_bfloat16",
    "int16", "float16", "bfloat16", "float32",
)
ENV_PREFIX = "RAYSCRIBE_"


class Settings(BaseSettings):
    """rayscribe's configuration; field ``x`` is read from ``RAYSCRIBE_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore",
        validate_default=True,
    )

    # Engine
    model: str = "tiny.en"
    backend: Literal["faster-whisper", "whisperx", "simulated"] = "faster-whisper"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"
    batch_size: int = Field(8, ge=1, le=256)
    beam_size: int = Field(5, ge=1, le=20)
    language: str | None = None
    word_timestamps: bool = True
    model_dir: str | None = None

    # WhisperX extras
    whisperx_align: bool = True
    align_model: str | None = None
    diarize: bool = False
    hf_token: str | None = Field(None, repr=False)

    # Simulated backend (tests and benchmarks only): audio seconds "transcribed" per wall second, sleeping
    simulated_speed: float = Field(50.0, gt=0, le=100_000)
    simulated_segment_seconds: float = Field(5.0, gt=0, le=3600)

    # Ray workers
    workers: int = Field(0, ge=0, le=4096)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpu_per_worker: float = Field(0.5, ge=0, le=8)
    cpu_threads: int = Field(0, ge=0, le=256)
    max_inflight_per_worker: int = Field(2, ge=1, le=64)
    spare_workers: int = Field(0, ge=0, le=64)
    prefetch_per_worker: int = Field(2, ge=0, le=64)
    prefetch_max_mb: int = Field(1024, ge=0)
    worker_probe_seconds: float = Field(5.0, ge=0)
    short_file_seconds: float = Field(60.0, ge=0)
    group_seconds: float = Field(240.0, gt=0)
    split_seconds: float = Field(600.0, ge=0)
    split_piece_seconds: float = Field(300.0, ge=60)
    ray_address: str | None = None

    # Outputs
    output_formats: Annotated[list[str], NoDecode] = ["txt", "srt", "vtt", "json"]

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("output_formats", mode="before")
    @classmethod
    def _split_formats(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("output_formats")
    @classmethod
    def _check_formats(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in OUTPUT_FORMATS]
        if bad:
            raise ValueError(f"unknown format(s) {', '.join(bad)}; allowed: {', '.join(OUTPUT_FORMATS)}")
        if not value:
            raise ValueError(f"at least one format is needed; allowed: {', '.join(OUTPUT_FORMATS)}")
        return list(dict.fromkeys(value))

    @field_validator("compute_type")
    @classmethod
    def _check_compute_type(cls, value: str) -> str:
        if value not in COMPUTE_TYPES:
            raise ValueError(f"unknown compute type {value!r}; allowed: {', '.join(COMPUTE_TYPES)}")
        return value

    @field_validator("language", "model_dir", "align_model", "hf_token", "ray_address", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str | None) -> str | None:
        return check_language_code(value)


def check_language_code(value: str | None) -> str | None:
    """A language setting in lower case, or an error that asks for an ISO 639-1 code; ``None`` stays ``None``."""
    if value is None:
        return None
    value = value.strip().lower()
    if not value.isalpha() or not 2 <= len(value) <= 3:
        raise ValueError(f"{value!r} is not a language code; use an ISO 639-1 code such as en or de")
    return value


def split_commas(value: Any) -> Any:
    """``"a, b,,c"`` → ``["a", "b", "c"]`` for list settings written as one environment variable."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return value


def format_validation_error(exc: ValidationError, secret_keys: Collection[str] = ()) -> str:
    """Turn pydantic's error list into lines that name the environment variable and what is allowed.

    A secret's value is never echoed; a check across several fields (no single key) is given by its message."""
    lines = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            lines.append(message)
            continue
        key = str(err["loc"][0])
        shown = "" if key in secret_keys else f"={err.get('input')!r}"
        lines.append(f"{ENV_PREFIX}{key.upper()}{shown}: {message}")
    return "invalid settings:\n  " + "\n  ".join(lines)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def read_settings(cls: type[SettingsT], overrides: dict[str, Any]) -> SettingsT:
    """Build any of rayscribe's settings classes from the environment and ``.env``; overrides that are not
    ``None`` (e.g. CLI flags) win. A bad value raises :class:`SettingsError`; fields declared with
    ``repr=False`` are secrets and their values stay out of the message."""
    secrets = {name for name, info in cls.model_fields.items() if info.repr is False}
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, secrets)) from None


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and ``.env``; overrides (e.g. CLI flags) win."""
    return read_settings(Settings, overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
