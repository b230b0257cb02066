"""Where the model runs: chosen once per process (CUDA when present, else CPU) and logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from rayscribe.errors import SettingsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu"
    compute_type: str  # CTranslate2 compute type
    cuda_devices: int


def cuda_device_count() -> int:
    """Number of CUDA devices CTranslate2 can use; 0 when there is no driver (never raises)."""
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # pragma: no cover - a broken CUDA install is reported as "no GPU"
        return 0


@lru_cache(maxsize=8)
def choose_device(device: str = "auto", compute_type: str = "auto") -> DeviceChoice:
    """Resolve ``auto`` settings: CUDA with float16 when a GPU is visible, else CPU with int8."""
    count = cuda_device_count()
    if device == "auto":
        device = "cuda" if count > 0 else "cpu"
    elif device == "cuda" and count == 0:
        raise SettingsError(
            "RAYSCRIBE_DEVICE=cuda but no CUDA device is visible here; use RAYSCRIBE_DEVICE=auto or cpu"
        )
    if compute_type in ("auto", "default"):
        compute_type = "float16" if device == "cuda" else "int8"
    log.info("device: %s (compute type %s, CUDA devices visible: %d)", device, compute_type, count)
    return DeviceChoice(device=device, compute_type=compute_type, cuda_devices=count)
