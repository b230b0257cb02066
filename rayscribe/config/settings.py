"""Every setting rayscribe reads, in one place: environment variables prefixed ``RAYSCRIBE_`` or a ``.env`` file.

A bad value fails at start with a :class:`SettingsError` naming the variable and the allowed values, so a
misconfigured worker never starts half-way. ``.env.template`` documents each key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from rayscribe.config.base import RayscribeSettings, read_settings, split_commas
from rayscribe.config.checks import check_language_code, check_output_formats

COMPUTE_TYPES = (
    "auto", "default", "int8", "int8_float16", "int8_float32", "int8_bfloat16",
    "int16", "float16", "bfloat16", "float32",
)


class Settings(RayscribeSettings):
    """rayscribe's configuration; field ``x`` is read from ``RAYSCRIBE_X``."""

    # Engine
    model: str = "base"
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
    output_formats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["txt", "srt", "vtt", "json"])

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Languages (docs/languages.md): what Whisper is asked to do, and which model hears which language
    task: Literal["transcribe", "translate"] = "transcribe"
    english_model: str | None = None
    detect_model: str | None = "base"

    # Joining a cluster (--address): how long a Ray GCS may take to answer before the command gives up
    ray_connect_timeout: float = Field(15.0, gt=0, le=3600)

    # Warm workers on a running cluster (commands that join one with --address; actors/pool/warm.py)
    warm_pool: bool = True
    warm_pool_idle_seconds: float = Field(300.0, gt=0)

    @field_validator("output_formats", mode="before")
    @classmethod
    def _split_formats(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("output_formats")
    @classmethod
    def _check_formats(cls, value: list[str]) -> list[str]:
        return check_output_formats(value)

    @field_validator("compute_type")
    @classmethod
    def _check_compute_type(cls, value: str) -> str:
        if value not in COMPUTE_TYPES:
            raise ValueError(f"unknown compute type {value!r}; allowed: {', '.join(COMPUTE_TYPES)}")
        return value

    @field_validator("language", "model_dir", "align_model", "hf_token", "ray_address", "english_model",
                     "detect_model", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str | None) -> str | None:
        return check_language_code(value)

    # GPU demand on autoscaling clusters (docs/cluster.md, "How GPU demand works")
    gpu_nodes: Literal["auto", "yes", "no"] = "auto"
    gpu_wait_seconds: float = Field(900.0, gt=0)
    autoscaling_config: str | None = None

    @field_validator("autoscaling_config", mode="before")
    @classmethod
    def _empty_config_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_english_only(self) -> Settings:
        """An English-only model with no multilingual one beside it cannot translate: say so at start (a file in
        another language fails on its own, naming the language: engines/routing.py)."""
        if self.backend != "faster-whisper" or not is_english_only(self.model) or self.detect_model:
            return self
        if self.task == "translate":
            raise ValueError(f"RAYSCRIBE_TASK=translate needs a multilingual model, but RAYSCRIBE_MODEL={self.model} "
                             "is English-only and RAYSCRIBE_DETECT_MODEL is empty; use RAYSCRIBE_MODEL=base")
        return self


def is_english_only(model: str) -> bool:
    """Whether a model name (or folder) is one of Whisper's English-only models (``tiny.en``, ``base.en``...)."""
    return model.rstrip("/").endswith(".en")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and ``.env``; overrides (e.g. CLI flags) win."""
    return read_settings(Settings, overrides)

