"""Builders for real audio test inputs: speech encoded with PyAV into every container rayscribe reads,
plus broken inputs (empty, truncated, corrupt, not audio, video without audio).

Plain functions, no pytest fixtures: tests decide where the files go and how long they live.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from jobs.harness.speech import speech_dir

JFK_WAV = speech_dir() / "jfk" / "jfk.wav"
JFK_SECONDS = 11.0


@dataclass(frozen=True)
class Format:
    """How one container/codec pair is written."""

    suffix: str
    container: str
    codec: str
    options: dict[str, str] | None = None
    bit_rate: int | None = None
    rate: int | None = None  # the codec's sample rate when it cannot encode the input's rate
    channels: int | None = None  # the codec's channel count when it cannot encode the input's


# Every container the project must read, keyed by the name the tests use.
FORMATS: dict[str, Format] = {
    "mp3": Format(".mp3", "mp3", "libmp3lame", bit_rate=64_000),
    "wav": Format(".wav", "wav", "pcm_s16le"),
    "flac": Format(".flac", "flac", "flac"),
    "m4a": Format(".m4a", "ipod", "aac", bit_rate=64_000),
    "webm": Format(".webm", "webm", "libopus", bit_rate=32_000, rate=48_000),
    # FFmpeg's own Vorbis encoder (libvorbis is not in PyAV's wheels) is experimental and stereo-only.
    "ogg": Format(".ogg", "ogg", "vorbis", options={"strict": "experimental"}, channels=2),
    # Also in AUDIO_EXTENSIONS: raw AAC in ADTS frames, and Opus in an Ogg container.
    "aac": Format(".aac", "adts", "aac", bit_rate=64_000),
    "opus": Format(".opus", "ogg", "libopus", bit_rate=32_000, rate=48_000),
}
LOSSLESS = frozenset({"wav", "flac"})


def load_reference(path: Path = JFK_WAV) -> tuple[np.ndarray, int]:
    """The source speech as float32 mono samples in [-1, 1] and its sample rate (read with PyAV)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32), rate


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Resample mono float32 ``samples`` with libswresample (keeps the tests independent of scipy)."""
    if rate == new_rate:
        return samples.astype(np.float32)
    frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=new_rate)
    outs = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([o.to_ndarray().reshape(-1) for o in outs]).astype(np.float32)


def encode_audio(
    samples: np.ndarray,
    sample_rate: int,
    path: Path,
    fmt: Format,
    channels: int | None = None,
) -> Path:
    """Encode ``samples`` ((n,) mono or (channels, n)) at ``sample_rate`` into ``path`` as ``fmt``.

    The input is handed to the encoder as packed float32; PyAV converts it to the codec's sample format,
    layout, rate and frame size. ``channels`` (or the format's own requirement) picks the stored layout.
    """
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data.reshape(1, -1)
    in_channels = data.shape[0]
    out_channels = channels or fmt.channels or in_channels
    if out_channels != in_channels:
        if in_channels != 1:
            raise ValueError("only mono input can be widened to more channels")
        data = np.repeat(data, out_channels, axis=0)
    layout = {1: "mono", 2: "stereo"}[out_channels]
    out_rate = fmt.rate or sample_rate
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format=fmt.container) as container:
        stream = container.add_stream(fmt.codec, rate=out_rate, options=fmt.options or {})
        stream.layout = layout
        if fmt.bit_rate:
            stream.bit_rate = fmt.bit_rate
        # Interleaved float32: (1, n * channels).
        frame = av.AudioFrame.from_ndarray(data.T.reshape(1, -1).copy(), format="flt", layout=layout)
        frame.sample_rate = sample_rate
        frame.time_base = Fraction(1, sample_rate)
        frame.pts = 0
        codec_rate = stream.codec_context.sample_rate
        codec_format = stream.codec_context.format.name
        frame_size = stream.codec_context.frame_size or None
        resampler = av.AudioResampler(
            format=codec_format, layout=layout, rate=codec_rate, frame_size=frame_size
        )
        for out in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(out):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_container_set(dest_dir: Path, source: Path = JFK_WAV) -> dict[str, Path]:
    """The JFK clip encoded into every format in :data:`FORMATS`, keyed like it."""
    samples, rate = load_reference(source)
    return {
        key: encode_audio(samples, rate, dest_dir / f"jfk{fmt.suffix}", fmt) for key, fmt in FORMATS.items()
    }


def make_stereo_44k(dest_dir: Path, fmt_key: str = "flac", source: Path = JFK_WAV) -> Path:
    """A 44.1 kHz stereo version: left is the speech, right is the speech at half level."""
    samples, rate = load_reference(source)
    hi = resample(samples, rate, 44_100)
    stereo = np.stack([hi, 0.5 * hi])
    fmt = FORMATS[fmt_key]
    return encode_audio(stereo, 44_100, dest_dir / f"jfk_44k_stereo{fmt.suffix}", fmt, channels=2)


def make_8k(dest_dir: Path, fmt_key: str = "wav", source: Path = JFK_WAV) -> Path:
    """An 8 kHz mono version (telephone quality)."""
    samples, rate = load_reference(source)
    fmt = FORMATS[fmt_key]
    return encode_audio(resample(samples, rate, 8_000), 8_000, dest_dir / f"jfk_8k{fmt.suffix}", fmt)


def make_concatenated_adts(dest_dir: Path, source: Path = JFK_WAV) -> Path:
    """Two ADTS AAC files glued together (16 kHz mono, then 44.1 kHz stereo): the stream changes its
    sample rate and layout half-way, as concatenated podcasts or broadcast captures do."""
    samples, rate = load_reference(source)
    fmt = FORMATS["aac"]
    first = encode_audio(samples, rate, dest_dir / "part1_16k_mono.aac", fmt)
    hi = resample(samples, rate, 44_100)
    second = encode_audio(np.stack([hi, hi]), 44_100, dest_dir / "part2_44k_stereo.aac", fmt)
    path = dest_dir / "concatenated.aac"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    return path


# --- bad inputs ---------------------------------------------------------------------------------------


def make_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_truncated(good: Path, path: Path, fraction: float = 1 / 3) -> Path:
    """The first ``fraction`` of ``good``'s bytes: the header still declares the full duration."""
    data = good.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def make_header_only_wav(good_wav: Path, path: Path) -> Path:
    """A WAV cut right after its header: it declares 11 s of data and holds none."""
    data = good_wav.read_bytes()
    offset = data.find(b"data")
    if offset < 0:
        raise ValueError(f"{good_wav} has no data chunk")
    path.write_bytes(data[: offset + 8])
    return path


def make_garbage_with_header(
    path: Path, header: bytes = b"ID3\x04\x00\x00\x00\x00\x00\x00", size: int = 4096, seed: int = 0
) -> Path:
    """Random bytes behind a fake header (an ID3 tag by default, so it looks like an mp3)."""
    rng = np.random.default_rng(seed)
    path.write_bytes(header + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def make_corrupt_middle(good: Path, path: Path, seed: int = 0) -> Path:
    """``good`` with its middle half overwritten by random bytes; the header stays intact."""
    data = bytearray(good.read_bytes())
    start, stop = len(data) // 4, 3 * len(data) // 4
    rng = np.random.default_rng(seed)
    data[start:stop] = rng.integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def make_text_as_audio(path: Path) -> Path:
    """A plain text file that only pretends to be audio by its name."""
    path.write_text("This is not audio. It is a meeting agenda.\n" * 40, encoding="utf-8")
    return path


def make_png_bytes() -> bytes:
    """A minimal PNG (signature + IHDR + IDAT + IEND) — a real image, not audio."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_video_only(path: Path, frames: int = 10, codec: str = "mpeg4") -> Path:
    """A container (format from the suffix, e.g. .mp4/.mkv) with one short video stream and no audio."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), (i * 25) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
