"""The one place that decodes audio: any container PyAV reads → 16 kHz mono float32.

No system ffmpeg is needed (PyAV bundles its libraries). Every failure becomes an :class:`AudioDecodeError`
that names the input and the cause, so a bad file fails alone instead of killing a worker.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import BinaryIO, Union

import av
import numpy as np

from rayscribe.errors import AudioDecodeError

SAMPLE_RATE = 16_000
AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".wav", ".flac", ".m4a", ".aac", ".mp4", ".webm", ".ogg", ".oga", ".opus", ".wma", ".mka"}
)
# A file whose decoded length falls this far short of what its header declares is reported as truncated.
TRUNCATION_TOLERANCE = 0.9
# Below this many seconds the header's duration is too coarse to judge truncation.
MIN_DURATION_FOR_TRUNCATION_CHECK = 1.0

AudioSource = Union[str, PathLike, bytes, bytearray, memoryview, BinaryIO]


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, PathLike)):
        return str(source)
    return getattr(source, "name", None) or "<bytes>"


def _open(source: AudioSource, name: str) -> av.container.InputContainer:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioDecodeError(name, "the file is empty (0 bytes)")
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioDecodeError(name, "no such file")
        if path.is_dir():
            raise AudioDecodeError(name, "is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioDecodeError(name, "the file is empty (0 bytes)")
        source = str(path)
    try:
        return av.open(source, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(name, f"not a readable audio container ({_ffmpeg_reason(exc)})") from None
    except (OSError, ValueError) as exc:
        raise AudioDecodeError(name, f"cannot open it ({exc})") from None


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _resampled_frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[np.ndarray]:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    for frame in container.decode(stream):
        frame.pts = None  # let the resampler handle streams with gaps or bad timestamps
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1)


def decode_audio(source: AudioSource, name: str | None = None) -> np.ndarray:
    """Decode ``source`` (a path, bytes or a binary file object) to 16 kHz mono float32 in [-1, 1].

    Raises :class:`AudioDecodeError` when the input is empty, truncated, corrupt or holds no audio stream.
    """
    label = name or _describe(source)
    container = _open(source, label)
    try:
        streams = container.streams.audio
        if not streams:
            raise AudioDecodeError(label, "it holds no audio stream (is it a video-only or non-audio file?)")
        stream = streams[0]
        stream.thread_type = "AUTO"
        try:
            chunks = list(_resampled_frames(container, stream))
        except av.error.FFmpegError as exc:
            raise AudioDecodeError(label, f"corrupt audio data ({_ffmpeg_reason(exc)})") from None
        declared = _declared_seconds(container, stream)
    finally:
        container.close()
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise AudioDecodeError(label, "no audio samples could be decoded (empty or corrupt stream)")
    decoded = audio.size / SAMPLE_RATE
    if (
        declared is not None
        and declared >= MIN_DURATION_FOR_TRUNCATION_CHECK
        and decoded < TRUNCATION_TOLERANCE * declared
    ):
        raise AudioDecodeError(
            label, f"truncated: the header declares {declared:.1f} s but only {decoded:.1f} s could be decoded"
        )
    return np.clip(audio, -1.0, 1.0, out=audio)


def probe_duration(source: AudioSource, name: str | None = None) -> float | None:
    """The duration in seconds the container declares, without decoding; ``None`` when unknown or unreadable."""
    label = name or _describe(source)
    try:
        container = _open(source, label)
    except AudioDecodeError:
        return None
    try:
        if not container.streams.audio:
            return None
        return _declared_seconds(container, container.streams.audio[0])
    finally:
        container.close()


def is_audio_path(path: Path) -> bool:
    """Whether ``path`` has one of the audio extensions rayscribe picks up when scanning directories."""
    return path.suffix.lower() in AUDIO_EXTENSIONS
