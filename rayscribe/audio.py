"""The one place that decodes audio: any container PyAV reads → 16 kHz mono float32.

No system ffmpeg is needed (PyAV bundles its libraries). Every failure becomes an :class:`AudioDecodeError`
that names the input and the cause, so a bad file fails alone instead of killing a worker.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import BinaryIO

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

AudioSource = str | PathLike | bytes | bytearray | memoryview | BinaryIO


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, PathLike)):
        return str(source)
    name = getattr(source, "name", None)
    return str(name) if name not in (None, "") else "<bytes>"


_HEAD_BYTES = 12  # enough for a RIFF/WAVE header's size field


def _peek(source: BinaryIO) -> tuple[int | None, bytes]:
    """Bytes left in a seekable file object and its first bytes, leaving its position where it was."""
    if not getattr(source, "seekable", lambda: False)():
        return None, b""
    position = source.tell()
    head = source.read(_HEAD_BYTES)
    end = source.seek(0, io.SEEK_END)
    source.seek(position)
    return end - position, head


def _prepare(source: AudioSource, name: str) -> tuple[str | io.BytesIO | BinaryIO, int | None, bytes]:
    """What to hand to ``av.open``, the input's size in bytes (``None`` if unknown) and its first bytes."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            return io.BytesIO(data), len(data), data[:_HEAD_BYTES]
        if isinstance(source, (str, PathLike)):
            path = Path(source)
            if not path.exists():
                raise AudioDecodeError(name, "no such file")
            if path.is_dir():
                raise AudioDecodeError(name, "is a directory, not an audio file")
            with path.open("rb") as fh:
                head = fh.read(_HEAD_BYTES)
            return str(path), path.stat().st_size, head
        size, head = _peek(source)
        return source, size, head
    except (OSError, ValueError) as exc:
        raise AudioDecodeError(name, f"cannot open it ({exc})") from None


# A WAV header says all there is to know about its stream, but FFmpeg's stream probe still reads up to its 5 MB
# probe size before it returns: 6 ms of an 11 s clip's 22 ms decode. Other containers keep the probe.
_WAV_PROBE = {"probesize": "4096"}
# FFmpeg's frame threads made FLAC 2-4x slower to decode on 2 cores (an 11 s clip 5 -> 21 ms, 10 min 0.23 ->
# 0.50 s); the other codecs measured within 15 % either way.
_NO_FRAME_THREADS = frozenset({"flac"})


def _is_wav(head: bytes) -> bool:
    return len(head) >= _HEAD_BYTES and head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def _open(source: AudioSource, name: str) -> tuple[av.container.InputContainer, int | None, bytes]:
    target, size, head = _prepare(source, name)
    if size == 0:
        raise AudioDecodeError(name, "the file is empty (0 bytes)")
    options = _WAV_PROBE if _is_wav(head) else {}
    try:
        return av.open(target, mode="r", metadata_errors="ignore", options=options), size, head
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(name, f"not a readable audio container ({_ffmpeg_reason(exc)})") from None
    except (OSError, ValueError) as exc:
        raise AudioDecodeError(name, f"cannot open it ({exc})") from None


def _check_riff_size(head: bytes, size: int | None, name: str) -> None:
    """FFmpeg clamps a cut WAV's length to what is there: compare the RIFF header's size with the file's."""
    if size is None or not _is_wav(head):
        return
    (riff_size,) = struct.unpack("<I", head[4:8])
    if riff_size in (0, 0xFFFFFFFF):  # streaming writers leave the size unset
        return
    declared = riff_size + 8
    if size < TRUNCATION_TOLERANCE * declared:
        raise AudioDecodeError(
            name, f"truncated: the header declares {declared} bytes but the file holds only {size}"
        )


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _pcm(frames: Iterable[av.AudioFrame]) -> Iterator[np.ndarray]:
    for frame in frames:
        yield frame.to_ndarray().reshape(-1)


def _is_target(frame: av.AudioFrame) -> bool:
    """Whether a frame is already what the resampler would make (it costs 7 ms of an 11 s WAV's decode)."""
    return (frame.format.name == "s16" and frame.sample_rate == SAMPLE_RATE
            and len(frame.layout.channels) == 1)


def _resampled_frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[np.ndarray]:
    # s16, like faster-whisper's own decoder: libswresample then normalises the downmix matrix, so a
    # stereo file is averaged instead of summed at +3 dB and clipped (it does not for float output).
    resampler: av.AudioResampler | None = None
    setup: tuple[str, str, int] | None = None
    for frame in container.decode(stream):
        if _is_target(frame):  # already 16 kHz mono s16 (a WAV recorded for speech): nothing to convert
            if resampler is not None:
                yield from _pcm(resampler.resample(None))
                resampler, setup = None, None
            yield frame.to_ndarray().reshape(-1)
            continue
        # A stream may change rate or layout mid-way (concatenated ADTS/MP3, chained Ogg): a resampler
        # only accepts the setup it started with, so flush it and start another.
        frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        if resampler is None or frame_setup != setup:
            if resampler is not None:
                yield from _pcm(resampler.resample(None))
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            setup = frame_setup
        frame.pts = None  # let the resampler handle streams with gaps or bad timestamps
        yield from _pcm(resampler.resample(frame))
    if resampler is not None:
        yield from _pcm(resampler.resample(None))


def _at_end(container: av.container.InputContainer, stream: av.AudioStream) -> bool:
    """Whether the input holds no packet of ``stream`` after the one that just failed to decode."""
    try:
        return not any(packet.size for packet in container.demux(stream))
    except av.error.FFmpegError:
        return False


def _check_length(label: str, declared: float | None, chunks: list[np.ndarray]) -> None:
    """Raise "truncated" when the header declares a length the decoded samples fall well short of."""
    decoded = sum(c.size for c in chunks) / SAMPLE_RATE
    if (
        declared is not None
        and declared >= MIN_DURATION_FOR_TRUNCATION_CHECK
        and decoded < TRUNCATION_TOLERANCE * declared
    ):
        raise AudioDecodeError(
            label,
            f"truncated: the header declares {declared:.1f} s but only {decoded:.1f} s could be decoded",
        )


def decode_audio(source: AudioSource, name: str | None = None) -> np.ndarray:
    """Decode ``source`` (a path, bytes or a binary file object) to 16 kHz mono float32 in [-1, 1].

    Raises :class:`AudioDecodeError` when the input is empty, truncated, corrupt or holds no audio stream.
    """
    return pcm16_to_float(decode_pcm16(source, name))


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    """16-bit PCM samples as float32 in [-1, 1), what the engines take; exact (every int16 has a float32)."""
    audio = pcm.astype(np.float32)
    audio /= 32768.0
    return audio


def engine_audio(audio: np.ndarray) -> np.ndarray:
    """Audio that travelled between processes, as an engine takes it: int16 PCM becomes float32, and a
    read-only array (deserialised without a copy) is copied, since some backends write to their input."""
    if audio.dtype == np.int16:
        return pcm16_to_float(audio)
    return audio if audio.flags.writeable else audio.copy()


def decode_pcm16(source: AudioSource, name: str | None = None) -> np.ndarray:
    """Decode ``source`` to 16 kHz mono int16 samples: :func:`decode_audio` before its conversion to float,
    and half its bytes, for audio that travels between processes before an engine takes it (the HTTP
    ingress hands uploads to the model deployment). Raises like :func:`decode_audio`."""
    label = name or _describe(source)
    container, size, head = _open(source, label)
    try:
        _check_riff_size(head, size, label)
        streams = container.streams.audio
        if not streams:
            raise AudioDecodeError(label, "it holds no audio stream (is it a video-only or non-audio file?)")
        stream = streams[0]
        if stream.codec_context.name not in _NO_FRAME_THREADS:
            stream.codec_context.thread_type = "AUTO"
        chunks: list[np.ndarray] = []
        try:
            for chunk in _resampled_frames(container, stream):
                chunks.append(chunk)
        except av.error.FFmpegError as exc:
            # A file cut short often ends in a broken last frame: "truncated" when nothing follows it and the
            # header promised more; a broken frame with more after it is corruption.
            if _at_end(container, stream):
                _check_length(label, _declared_seconds(container, stream), chunks)
            raise AudioDecodeError(label, f"corrupt audio data ({_ffmpeg_reason(exc)})") from None
        declared = _declared_seconds(container, stream)
    finally:
        container.close()
    if not chunks or sum(c.size for c in chunks) == 0:
        raise AudioDecodeError(label, "no audio samples could be decoded (empty or corrupt stream)")
    _check_length(label, declared, chunks)
    return np.concatenate(chunks)


def probe_duration(source: AudioSource, name: str | None = None) -> float | None:
    """The duration in seconds the container declares, without decoding; ``None`` if unknown or unreadable."""
    label = name or _describe(source)
    try:
        container, _, _ = _open(source, label)
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
