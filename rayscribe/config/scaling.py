"""Settings of the queue-driven autoscaling policy, read like the others: ``RAYSCRIBE_SCALING_*`` or ``.env``.

A class of its own so the batch and HTTP paths never see them. The fields carry the ``scaling_`` prefix in their
names (not in ``env_prefix``) so that error messages, which name ``RAYSCRIBE_<FIELD>``, name the real variable.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from rayscribe.config.base import RayscribeSettings, read_settings


class ScalingSettings(RayscribeSettings):
    """Autoscaling configuration; field ``x`` is read from ``RAYSCRIBE_X``."""

    scaling_target_drain_seconds: float = Field(600.0, gt=0)
    scaling_throughput_prior: float = Field(30.0, gt=0)
    scaling_job_seconds_prior: float = Field(300.0, gt=0)
    scaling_ewma_alpha: float = Field(0.2, gt=0, le=1)
    scaling_min_gpus: int = Field(0, ge=0, le=10000)
    scaling_max_gpus: int = Field(4, ge=1, le=10000)
    scaling_idle_timeout: float = Field(300.0, ge=0)
    scaling_poll_interval: float = Field(10.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _check_range(self) -> ScalingSettings:
        if self.scaling_min_gpus > self.scaling_max_gpus:
            raise ValueError(f"RAYSCRIBE_SCALING_MIN_GPUS ({self.scaling_min_gpus}) must not exceed "
                             f"RAYSCRIBE_SCALING_MAX_GPUS ({self.scaling_max_gpus})")
        return self


def load_scaling_settings(**overrides: Any) -> ScalingSettings:
    """Read the autoscaling settings from the environment and ``.env``; overrides win."""
    return read_settings(ScalingSettings, overrides)
