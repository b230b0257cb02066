"""One long file across the pool's workers (batch path); the queue path is covered in test_queue_worker."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from ray.exceptions import RayActorError

from actors.pool import WhisperPool
from actors.split import should_split
from jobs.harness.audio import build_long_form, write_wav
from rayscribe.audio import decode_audio
from rayscribe.config.settings import load_settings
from rayscribe.work import WorkItem
from tests.speech import references, require_speech, wer


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> tuple[Path, str]:
    root = require_speech() / "librivox"
    refs = references(str(root))
    audio, text = build_long_form([(decode_audio(root / n), t) for n, t in sorted(refs.items())], 150.0)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    write_wav(path, audio)
    return path, text


def test_should_split_needs_a_known_long_file_and_several_workers() -> None:
    settings = load_settings(split_seconds=100)
    long_item = WorkItem(key="a", name="a", source="a", duration=150.0)
    assert should_split(long_item, settings, workers=2)
    assert not should_split(long_item, settings, workers=1)
    assert not should_split(WorkItem(key="b", name="b", source="b", duration=90.0), settings, workers=2)
    assert not should_split(WorkItem(key="c", name="c", source="c", duration=None), settings, workers=2)
    assert not should_split(long_item, load_settings(split_seconds=0), workers=2)


def test_a_long_file_is_split_across_workers_and_stitched(ray_connected, long_file: tuple[Path, str]) -> None:
    path, reference = long_file
    pool = WhisperPool(load_settings(cpu_threads=1, split_seconds=60, split_piece_seconds=60), workers=2)
    pool.start()
    try:
        item = WorkItem(key="long", name=str(path), source=str(path), duration=150.0)
        [result] = pool.run([item], lambda i: Path(i.source).read_bytes())
        # the coordinator dies during a file: that call fails (its caller retries the file), Ray starts it again
        ref = pool.split(WorkItem(key="long-c", name=str(path), source=str(path), duration=150.0),
                         path.read_bytes(), None)
        ray.kill(pool.coordinator, no_restart=False)
        with pytest.raises(RayActorError):
            ray.get(ref, timeout=120)
        [after_restart] = pool.run([WorkItem(key="long-r", name=str(path), source=str(path), duration=150.0)],
                                   lambda i: Path(i.source).read_bytes())
        # a dead worker's pieces go to the live one
        ray.kill(pool.workers()[0], no_restart=True)
        item2 = WorkItem(key="long2", name=str(path), source=str(path), duration=150.0)
        [after_kill] = pool.run([item2], lambda i: Path(i.source).read_bytes())
    finally:
        pool.stop()
    assert result.ok, result.error
    assert result.worker["pieces"] == 4 and result.worker["workers_used"] == 2
    assert abs(result.audio_seconds - result.transcript.duration) < 0.01
    assert wer([reference], [result.transcript.text]) < 0.1
    starts = [w.start for w in result.transcript.words]
    assert starts == sorted(starts)
    assert after_restart.ok and after_restart.transcript.text == result.transcript.text, after_restart.error
    assert after_kill.ok, after_kill.error
    assert wer([result.transcript.text], [after_kill.transcript.text]) < 0.01


def test_a_split_file_hears_its_language_once_and_every_piece_goes_to_one_model(ray_connected,
                                                                                 tmp_path: Path) -> None:
    """A file split over workers is detected once, on its first speech, and every piece is decoded in that
    language by that language's model: German speech ending in an English clip stays German and all ``base``,
    where hearing each piece alone would send the English piece to the English model (RAYSCRIBE_ENGLISH_MODEL)."""
    import numpy as np

    from jobs.harness.multilingual import multilingual_dir
    from rayscribe.audio import SAMPLE_RATE

    root = multilingual_dir() / "de"
    if not (root / "transcripts.tsv").exists():
        pytest.skip(f"multilingual clips not found at {root} (set RAYSCRIBE_MULTILINGUAL_DIR)")
    german = [decode_audio(path) for path in sorted(root.glob("*")) if path.suffix in {".ogg", ".wav"}]
    english = [decode_audio(require_speech() / name) for name in ("jfk/jfk.wav", "ljspeech/LJ001-0001.wav")]
    # about 95 s of German, then 34 s of English: the last of the four pieces is all English
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    parts = german + german + german[2:3] + english + english[:1]
    audio = np.concatenate([p for part in parts for p in (part, gap)])
    path = tmp_path / "de-then-en.wav"
    write_wav(path, audio)
    duration = audio.shape[0] / SAMPLE_RATE
    settings = load_settings(model="base", english_model="tiny.en", detect_model="base", beam_size=1, cpu_threads=1,
                             cpus_per_worker=0.5, split_seconds=100, split_piece_seconds=60)
    pool = WhisperPool(settings, workers=2)
    pool.start()
    try:
        [result] = pool.run([WorkItem(key="mixed", name=path.name, source=str(path), duration=duration)],
                            lambda i: Path(i.source).read_bytes())
    finally:
        pool.stop()
    assert result.ok, result.error
    assert result.worker["pieces"] == 4 and result.worker["workers_used"] == 2
    transcript = result.transcript
    assert transcript.language == "de" and 0.5 < transcript.language_probability < 1.0
    assert transcript.model == "base"
    assert {"dinosaurier", "mekka"} <= set(transcript.text.lower().replace(",", " ").replace(".", " ").split())
