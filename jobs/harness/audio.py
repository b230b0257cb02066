"""Audio inputs for the tests and benchmarks: the one WAV writer, synthetic tones, and workloads built from the
shared speech clips (the 42 short files; long-form audio made by concatenating them)."""

from __future__ import annotations

import io
import random
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from jobs.harness.speech import references
from rayscribe.audio import SAMPLE_RATE, decode_audio

GAP_SECONDS = 0.5
SPEECH_FOLDERS = ("jfk", "librivox", "ljspeech")
T = TypeVar("T")


def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """Mono float samples in [-1, 1] (clipped) as a 16-bit PCM WAV with a plain 44-byte header, whose declared
    length a truncated copy keeps (so a cut copy is a broken file, as the decode tests need)."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """:func:`wav_bytes` written to ``path``."""
    path.write_bytes(wav_bytes(audio, rate))
    return path


def tone(seconds: float, seed: int = 0, *, noise: float = 0.02) -> np.ndarray:
    """A sine (its pitch set by ``seed``) with a little noise: input the decoder reads but is no speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = 0.2 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + noise * rng.standard_normal(t.size)
    return signal


def flac_bytes(audio: np.ndarray) -> bytes:
    """Mono float samples as FLAC, written with PyAV (tests and the soak then feed two containers)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


@dataclass
class Clip:
    path: Path
    text: str
    seconds: float


def shared_clips(folder: Path) -> tuple[list[Clip], list[Clip]]:
    """(clips for the long-form set: the WAVs; every clip as a short file: 42, jfk in three formats)."""
    everything = []
    for sub in SPEECH_FOLDERS:
        refs = references(str(folder / sub))
        for path in sorted((folder / sub).iterdir()):
            if path.name in refs:
                everything.append(Clip(path, refs[path.name], decode_audio(path).shape[0] / SAMPLE_RATE))
    return [c for c in everything if c.path.suffix == ".wav"], everything


def spread(items: Sequence[T], count: int) -> list[T]:
    """``count`` items picked evenly across ``items`` (all of them when ``count`` is not smaller)."""
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def build_long_form(
    clips: Sequence[tuple[np.ndarray, str]], seconds: float, *, gap: float = GAP_SECONDS, seed: int = 0
) -> tuple[np.ndarray, str]:
    """Concatenate (audio, text) clips in reshuffled rounds, with ``gap`` seconds of silence between them,
    until at least ``seconds`` of audio; returns the audio and its reference text."""
    if not clips:
        raise ValueError("no clips to build long-form audio from")
    rng = random.Random(seed)
    silence = np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)
    pieces: list[np.ndarray] = []
    texts: list[str] = []
    samples, wanted = 0, int(seconds * SAMPLE_RATE)
    while samples < wanted:
        order = list(clips)
        rng.shuffle(order)
        for audio, text in order:
            pieces.extend([audio.astype(np.float32), silence])
            texts.append(text.strip())
            samples += audio.shape[0] + silence.shape[0]
            if samples >= wanted:
                break
    return np.concatenate(pieces), " ".join(texts)
