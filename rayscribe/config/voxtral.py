"""Settings of audio understanding (Voxtral) and of the hybrid Whisper + Voxtral placement: ``RAYSCRIBE_VOXTRAL_*``
and ``RAYSCRIBE_HYBRID_*``, read like the main settings (environment or ``.env``).

A class of its own so the Whisper-only paths never see it; everything here is off or inert until
``RAYSCRIBE_VOXTRAL_ENABLED=true`` (the HTTP route, the queue's ``analyze`` and the hybrid group need it).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from rayscribe.config.base import RayscribeSettings, read_settings
from rayscribe.config.checks import check_language_code

DEFAULT_VOXTRAL_MODEL = "mistralai/Voxtral-Mini-3B-2507"
DEFAULT_SUMMARY_PROMPT = (
    "Summarize this audio in a few sentences: the main topics, any decisions or action items, and who speaks "
    "if that is clear."
)


class VoxtralSettings(RayscribeSettings):
    """Voxtral and hybrid configuration; field ``x`` is read from ``RAYSCRIBE_X``."""

    voxtral_enabled: bool = False
    voxtral_model: str = DEFAULT_VOXTRAL_MODEL
    voxtral_device: Literal["auto", "cpu", "cuda"] = "auto"
    voxtral_max_new_tokens: int = Field(512, ge=1, le=32768)
    voxtral_temperature: float = Field(0.0, ge=0.0, le=2.0)
    voxtral_max_audio_seconds: float = Field(1800.0, gt=0)
    voxtral_language: str | None = None
    voxtral_summary_prompt: str = Field(DEFAULT_SUMMARY_PROMPT, min_length=1)
    voxtral_memory_headroom_gb: float = Field(1.5, ge=0, le=1024)
    voxtral_gpu_fraction: float = Field(0.5, ge=0, le=8)
    voxtral_cpus: float = Field(1.0, gt=0, le=256)
    voxtral_cpu_threads: int = Field(0, ge=0, le=256)

    # Hybrid: one Whisper worker and one Voxtral worker packed onto one GPU (STRICT_PACK placement group)
    hybrid_whisper_gpu: float = Field(0.5, ge=0, le=1)
    hybrid_voxtral_gpu: float = Field(0.5, ge=0, le=1)
    hybrid_cpus: float = Field(1.0, gt=0, le=256)

    @field_validator("voxtral_language", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("voxtral_language")
    @classmethod
    def _check_language(cls, value: str | None) -> str | None:
        return check_language_code(value)

    @field_validator("hybrid_voxtral_gpu")
    @classmethod
    def _check_fit(cls, value: float, info: Any) -> float:
        whisper = info.data.get("hybrid_whisper_gpu", 0.5)
        if whisper + value > 1.0 + 1e-9:
            raise ValueError(f"HYBRID_WHISPER_GPU ({whisper:g}) + HYBRID_VOXTRAL_GPU ({value:g}) must not exceed 1: "
                             "both workers share one GPU")
        return value


def load_voxtral_settings(**overrides: Any) -> VoxtralSettings:
    """Read the Voxtral settings from the environment and ``.env``; overrides (e.g. CLI flags) win."""
    return read_settings(VoxtralSettings, overrides)
