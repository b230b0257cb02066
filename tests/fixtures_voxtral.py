"""Fixtures for the Voxtral tests: a tiny random-weight Voxtral model folder, built once per session (the real
weights can't be fetched here), and the engine loaded from it on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

__all__ = ["tiny_voxtral", "voxtral_engine"]


@pytest.fixture(scope="session")
def tiny_voxtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny Voxtral: config.json, model.safetensors, tekken.json, preprocessor_config.json."""
    pytest.importorskip("transformers", reason="needs the voxtral extra")
    from rayscribe.engines.voxtral_tiny import build_tiny_voxtral

    return build_tiny_voxtral(tmp_path_factory.mktemp("voxtral") / "tiny-voxtral")


@pytest.fixture(scope="session")
def voxtral_engine(tiny_voxtral: Path) -> Any:
    """The engine on the tiny model (CPU, float32, short answers), loaded once."""
    from rayscribe.config.voxtral import load_voxtral_settings
    from rayscribe.engines.voxtral_engine import VoxtralEngine

    return VoxtralEngine(load_voxtral_settings(voxtral_model=str(tiny_voxtral), voxtral_device="cpu",
                                               voxtral_max_new_tokens=8, voxtral_cpus=2))
