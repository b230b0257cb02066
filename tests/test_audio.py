"""rayscribe.audio: real speech encoded into every supported container decodes to 16 kHz mono float32 that
matches the source; every broken input fails with one AudioDecodeError naming the input and the cause."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from rayscribe.audio import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    decode_audio,
    decode_pcm16,
    engine_audio,
    is_audio_path,
    probe_duration,
)
from rayscribe.errors import AudioDecodeError

try:
    from tests import audio_fixtures as af
except ImportError:  # plain `pytest`, without the repository root on sys.path
    import audio_fixtures as af  # type: ignore[no-redef]

# Lossy codecs prime and pad their frames; 0.1 s covers AAC (1024 samples) and Opus (312 at 48 kHz).
DURATION_TOLERANCE_S = 0.1
# The codecs each fixture must really use (checked so a fixture cannot silently fall back to PCM).
EXPECTED_CODECS = {
    "mp3": "mp3float",  # FFmpeg's float MP3 decoder
    "wav": "pcm_s16le",
    "flac": "flac",
    "m4a": "aac",
    "webm": "opus",
    "ogg": "vorbis",
    "aac": "aac",
    "opus": "opus",
}


# --- helpers ------------------------------------------------------------------------------------------


def best_lag_ncc(decoded: np.ndarray, reference: np.ndarray, max_lag: int = 4_000) -> tuple[float, int]:
    """Normalised cross-correlation of two signals at the best lag within ±``max_lag`` samples."""
    a = decoded.astype(np.float64)
    b = reference.astype(np.float64)
    n = a.size + b.size
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = corr[lags % n] / (np.linalg.norm(a) * np.linalg.norm(b))
    best = int(np.argmax(values))
    return float(values[best]), int(lags[best])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def stream_info(path: Path) -> tuple[str, int, int]:
    """(codec, sample rate, channels) of a file's first audio stream, read with PyAV directly."""
    with av.open(str(path)) as container:
        ctx = container.streams.audio[0].codec_context
        return ctx.name, ctx.sample_rate, ctx.channels


def assert_is_16k_mono_float(audio: np.ndarray) -> None:
    assert isinstance(audio, np.ndarray)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert np.isfinite(audio).all()
    assert float(audio.min()) >= -1.0
    assert float(audio.max()) <= 1.0


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference() -> np.ndarray:
    samples, rate = af.load_reference()
    assert rate == SAMPLE_RATE  # the JFK clip is stored at 16 kHz mono
    assert abs(samples.size / rate - af.JFK_SECONDS) < 0.01
    return samples


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session")
def containers(media_dir: Path) -> dict[str, Path]:
    return af.make_container_set(media_dir / "good")


@pytest.fixture(scope="session")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad")


# --- good inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(af.FORMATS))
def test_fixture_is_encoded_with_the_intended_codec(containers: dict[str, Path], key: str) -> None:
    codec, _, _ = stream_info(containers[key])
    assert codec == EXPECTED_CODECS[key]
    assert containers[key].suffix == af.FORMATS[key].suffix


@pytest.mark.parametrize("key", sorted(af.FORMATS))
def test_every_container_decodes_to_the_original_speech(
    containers: dict[str, Path], reference: np.ndarray, key: str
) -> None:
    audio = decode_audio(containers[key])

    assert_is_16k_mono_float(audio)
    assert audio.size / SAMPLE_RATE == pytest.approx(af.JFK_SECONDS, abs=DURATION_TOLERANCE_S)
    ncc, lag = best_lag_ncc(audio, reference)
    # The level is kept: a mono source stored as dual-mono stereo (ogg) must not come out 3 dB louder.
    assert rms(audio) / rms(reference) == pytest.approx(1.0, abs=0.1)
    if key in af.LOSSLESS:
        assert lag == 0
        assert audio.size == reference.size
        np.testing.assert_allclose(audio, reference, atol=1e-4)
    else:
        assert ncc > 0.95, f"{key}: best normalised cross-correlation {ncc:.3f} at lag {lag}"
        assert abs(lag) <= 0.1 * SAMPLE_RATE


@pytest.mark.parametrize("fmt_key", ["flac", "mp3"])
def test_stereo_44k_comes_out_16k_mono_averaged(media_dir: Path, reference: np.ndarray, fmt_key: str) -> None:
    path = af.make_stereo_44k(media_dir / "stereo", fmt_key)
    _, rate, channels = stream_info(path)
    assert (rate, channels) == (44_100, 2)

    audio = decode_audio(path)

    assert_is_16k_mono_float(audio)
    assert audio.size / SAMPLE_RATE == pytest.approx(af.JFK_SECONDS, abs=DURATION_TOLERANCE_S)
    ncc, lag = best_lag_ncc(audio, reference)
    assert ncc > 0.95
    assert abs(lag) <= 0.1 * SAMPLE_RATE
    # Left is the speech, right is it at half level: the mono mix is their average, 0.75 of the speech.
    assert rms(audio) / rms(reference) == pytest.approx(0.75, abs=0.05)


def test_8k_input_comes_out_16k_with_the_right_length(media_dir: Path, reference: np.ndarray) -> None:
    path = af.make_8k(media_dir / "8k")
    _, rate, channels = stream_info(path)
    assert (rate, channels) == (8_000, 1)

    audio = decode_audio(path)

    assert_is_16k_mono_float(audio)
    assert audio.size / SAMPLE_RATE == pytest.approx(af.JFK_SECONDS, abs=0.01)
    ncc, lag = best_lag_ncc(audio, reference)
    assert ncc > 0.95  # the clip has little energy above the 4 kHz that 8 kHz keeps
    assert abs(lag) <= 10


def test_loud_dual_mono_stereo_is_averaged_not_summed_and_clipped(
    media_dir: Path, reference: np.ndarray
) -> None:
    loud = (reference * (0.95 / np.abs(reference).max())).astype(np.float32)
    path = af.encode_audio(
        np.stack([loud, loud]), SAMPLE_RATE, media_dir / "loud_stereo.wav", af.FORMATS["wav"]
    )

    audio = decode_audio(path)

    assert audio.size == loud.size
    assert np.abs(audio).max() == pytest.approx(0.95, abs=1e-3)
    np.testing.assert_allclose(audio, loud, atol=1e-3)


def test_16k_mono_s16_wav_skips_the_resampler_and_is_sample_exact(
    monkeypatch: pytest.MonkeyPatch, containers: dict[str, Path]
) -> None:
    import wave

    import rayscribe.audio as audio_module

    with wave.open(str(containers["wav"])) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        written = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    fast = decode_audio(containers["wav"])
    np.testing.assert_array_equal(fast, written.astype(np.float32) / 32768.0)
    monkeypatch.setattr(audio_module, "_is_target", lambda frame: False)  # every frame through the resampler
    np.testing.assert_array_equal(decode_audio(containers["wav"]), fast)


@pytest.mark.parametrize("key", ["wav", "mp3", "ogg"])
def test_int16_pcm_is_the_float_audio_exactly_at_half_the_bytes(containers: dict[str, Path], key: str) -> None:
    pcm = decode_pcm16(containers[key])
    audio = decode_audio(containers[key])

    assert pcm.dtype == np.int16 and pcm.nbytes * 2 == audio.nbytes
    np.testing.assert_array_equal(engine_audio(pcm), audio)  # what a deployment hands its engine


def test_engine_audio_copies_a_read_only_array_and_keeps_a_writeable_one() -> None:
    audio = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    assert engine_audio(audio) is audio
    audio.flags.writeable = False
    copy = engine_audio(audio)
    assert copy is not audio and copy.flags.writeable
    np.testing.assert_array_equal(copy, audio)


@pytest.mark.parametrize("where", ["before fmt", "before data"])
def test_wav_with_a_large_chunk_in_its_header_decodes_whole(
    containers: dict[str, Path], reference: np.ndarray, where: str
) -> None:
    """WAVs skip most of FFmpeg's stream probe (it reads 4 KB, not 5 MB): a 64 KB metadata chunk (a broadcast
    WAV's ``bext``, a ``LIST``) ahead of the format or the samples must not hide the stream."""
    data = containers["wav"].read_bytes()
    assert data[12:16] == b"fmt "
    fmt_end = 20 + int.from_bytes(data[16:20], "little")
    extra = b"bext" + (65536).to_bytes(4, "little") + bytes(65536)
    body = extra + data[12:] if where == "before fmt" else data[12:fmt_end] + extra + data[fmt_end:]
    wav = b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WAVE" + body

    audio = decode_audio(wav)

    assert audio.size == reference.size
    np.testing.assert_allclose(audio, reference, atol=1e-4)


def test_stream_that_changes_rate_and_layout_midway_decodes_whole(
    media_dir: Path, reference: np.ndarray
) -> None:
    path = af.make_concatenated_adts(media_dir / "concat")

    audio = decode_audio(path)

    assert_is_16k_mono_float(audio)
    assert audio.size / SAMPLE_RATE == pytest.approx(2 * af.JFK_SECONDS, abs=2 * DURATION_TOLERANCE_S)
    half = audio.size // 2
    for part in (audio[:half], audio[half:]):  # both halves hold the speech, not silence
        ncc, _ = best_lag_ncc(part, reference)
        assert ncc > 0.9


@pytest.mark.parametrize("key", ["mp3", "m4a", "webm", "wav"])
def test_path_bytes_and_file_object_give_the_same_array(containers: dict[str, Path], key: str) -> None:
    path = containers[key]
    data = path.read_bytes()

    from_path = decode_audio(path)
    assert from_path.size > 10 * SAMPLE_RATE
    np.testing.assert_array_equal(decode_audio(str(path)), from_path)
    np.testing.assert_array_equal(decode_audio(data), from_path)
    np.testing.assert_array_equal(decode_audio(bytearray(data)), from_path)
    np.testing.assert_array_equal(decode_audio(memoryview(data)), from_path)
    np.testing.assert_array_equal(decode_audio(io.BytesIO(data)), from_path)
    with path.open("rb") as fh:
        np.testing.assert_array_equal(decode_audio(fh), from_path)


class _Pipe:
    """A read-only, non-seekable byte stream (a socket or an HTTP body)."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buffer.read(n)

    def seekable(self) -> bool:
        return False


@pytest.mark.parametrize("key", ["mp3", "wav", "webm"])
def test_non_seekable_stream_decodes_like_the_file(containers: dict[str, Path], key: str) -> None:
    from_path = decode_audio(containers[key])

    streamed = decode_audio(_Pipe(containers[key].read_bytes()), name=f"pipe.{key}")

    # Without seeking FFmpeg cannot read the MP3 end-padding length, so a few hundred samples may remain.
    assert abs(streamed.size - from_path.size) <= 0.05 * SAMPLE_RATE
    n = min(streamed.size, from_path.size)
    np.testing.assert_array_equal(streamed[:n], from_path[:n])


# --- bad inputs ---------------------------------------------------------------------------------------

BadCase = Callable[[Path, dict[str, Path]], Path]


def _png_as_mp3(d: Path, _: dict[str, Path]) -> Path:
    path = d / "picture.mp3"
    path.write_bytes(af.make_png_bytes())
    return path


# (builder, what the cause must say)
BAD_FILES: dict[str, tuple[BadCase, str]] = {
    "empty": (lambda d, _: af.make_empty(d / "empty.mp3"), "empty"),
    "truncated_mp3": (lambda d, g: af.make_truncated(g["mp3"], d / "cut.mp3"), "truncated"),
    "truncated_flac": (lambda d, g: af.make_truncated(g["flac"], d / "cut.flac"), "truncated"),
    "truncated_webm": (lambda d, g: af.make_truncated(g["webm"], d / "cut.webm"), "truncated"),
    "truncated_wav": (lambda d, g: af.make_truncated(g["wav"], d / "cut.wav"), "truncated"),
    "wav_header_only": (lambda d, g: af.make_header_only_wav(g["wav"], d / "header_only.wav"), "truncated"),
    # The ipod muxer writes the index (moov) last, so the first third of an m4a has no index at all.
    "truncated_m4a": (
        lambda d, g: af.make_truncated(g["m4a"], d / "cut.m4a"),
        "not a readable audio container",
    ),
    "garbage_id3": (
        lambda d, _: af.make_garbage_with_header(d / "noise.mp3"),
        "not a readable audio container",
    ),
    "garbage_riff": (
        lambda d, _: af.make_garbage_with_header(d / "noise.wav", header=b"RIFF\x00\x10\x00\x00WAVEfmt "),
        "not a readable audio container",
    ),
    "corrupt_mp3": (lambda d, g: af.make_corrupt_middle(g["mp3"], d / "mangled.mp3"), "corrupt audio data"),
    "corrupt_m4a": (lambda d, g: af.make_corrupt_middle(g["m4a"], d / "mangled.m4a"), "corrupt audio data"),
    # FLAC stops at the first bad frame: too little decodes, so it is reported as cut short.
    "corrupt_flac": (lambda d, g: af.make_corrupt_middle(g["flac"], d / "mangled.flac"), "truncated"),
    "text_as_mp3": (lambda d, _: af.make_text_as_audio(d / "agenda.mp3"), "not a readable audio container"),
    "png_as_mp3": (_png_as_mp3, "no audio stream"),
    "video_only_mp4": (lambda d, _: af.make_video_only(d / "clip.mp4"), "no audio stream"),
    "video_only_mkv": (lambda d, _: af.make_video_only(d / "clip.mkv"), "no audio stream"),
    "missing": (lambda d, _: d / "does_not_exist.mp3", "no such file"),
    "directory": (lambda d, _: (d / "folder.mp3").resolve(), "directory"),
}


@pytest.fixture(scope="session")
def bad_files(bad_dir: Path, containers: dict[str, Path]) -> dict[str, Path]:
    (bad_dir / "folder.mp3").mkdir()
    return {key: build(bad_dir, containers) for key, (build, _) in BAD_FILES.items()}


@pytest.mark.parametrize("key", sorted(BAD_FILES))
def test_bad_path_raises_audio_decode_error_naming_file_and_cause(
    bad_files: dict[str, Path], key: str
) -> None:
    path = bad_files[key]
    expected_cause = BAD_FILES[key][1]

    with pytest.raises(AudioDecodeError) as info:
        decode_audio(path)

    err = info.value
    assert err.name == str(path)
    assert expected_cause in err.cause
    message = str(err)
    assert path.name in message
    assert err.cause in message


@pytest.mark.parametrize(
    "key",
    sorted(k for k in BAD_FILES if k not in {"missing", "directory", "video_only_mp4", "video_only_mkv"}),
)
def test_bad_bytes_and_file_objects_raise_with_the_given_name(bad_files: dict[str, Path], key: str) -> None:
    data = bad_files[key].read_bytes()
    expected_cause = BAD_FILES[key][1]

    with pytest.raises(AudioDecodeError) as from_bytes:
        decode_audio(data, name=f"upload-{key}.bin")
    assert from_bytes.value.name == f"upload-{key}.bin"
    assert f"upload-{key}.bin" in str(from_bytes.value)
    assert expected_cause in from_bytes.value.cause

    with pytest.raises(AudioDecodeError) as from_fileobj:
        decode_audio(io.BytesIO(data), name=f"stream-{key}")
    assert from_fileobj.value.name == f"stream-{key}"
    assert expected_cause in from_fileobj.value.cause


def test_file_object_error_names_the_open_file(bad_files: dict[str, Path]) -> None:
    path = bad_files["truncated_mp3"]
    with path.open("rb") as fh, pytest.raises(AudioDecodeError) as info:
        decode_audio(fh)
    assert info.value.name == str(path)
    assert "truncated" in info.value.cause


def test_anonymous_bytes_are_labelled() -> None:
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(b"")
    assert info.value.name == "<bytes>"
    assert "empty" in info.value.cause


def test_truncated_cause_states_declared_and_decoded_lengths(bad_files: dict[str, Path]) -> None:
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(bad_files["truncated_mp3"])
    cause = info.value.cause
    assert "11.0 s" in cause  # what the header declares
    declared, decoded = (float(s.split(" s")[0]) for s in cause.split("declares ")[1].split("only "))
    assert declared == pytest.approx(af.JFK_SECONDS, abs=0.1)
    assert 2.0 < decoded < 5.0  # about a third of 11 s


def test_error_survives_pickling(bad_files: dict[str, Path]) -> None:
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(bad_files["empty"])
    clone = pickle.loads(pickle.dumps(info.value))
    assert isinstance(clone, AudioDecodeError)
    assert (clone.name, clone.cause, str(clone)) == (info.value.name, info.value.cause, str(info.value))


# --- probe_duration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(af.FORMATS))
def test_probe_duration_of_good_files(containers: dict[str, Path], key: str) -> None:
    duration = probe_duration(containers[key])
    assert duration is not None
    # Raw ADTS has no header length: FFmpeg estimates it from the bit rate, so it is coarser.
    tolerance = 0.5 if key == "aac" else DURATION_TOLERANCE_S
    assert duration == pytest.approx(af.JFK_SECONDS, abs=tolerance)


def test_probe_duration_of_bytes_and_file_objects(containers: dict[str, Path]) -> None:
    data = containers["flac"].read_bytes()
    assert probe_duration(data) == pytest.approx(af.JFK_SECONDS, abs=0.01)
    assert probe_duration(io.BytesIO(data)) == pytest.approx(af.JFK_SECONDS, abs=0.01)


@pytest.mark.parametrize(
    "key",
    [
        "empty",
        "text_as_mp3",
        "png_as_mp3",
        "video_only_mp4",
        "video_only_mkv",
        "garbage_id3",
        "missing",
        "directory",
    ],
)
def test_probe_duration_is_none_for_non_audio(bad_files: dict[str, Path], key: str) -> None:
    assert probe_duration(bad_files[key]) is None


# --- is_audio_path ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["talk.mp3", "TALK.MP3", "a.Wav", "b.flac", "c.M4A", "d.webm", "e.OGG", "f.opus", "g.aac", "dir.x/h.mp3"],
)
def test_is_audio_path_accepts_audio_extensions_in_any_case(name: str) -> None:
    assert is_audio_path(Path(name))


@pytest.mark.parametrize(
    "name", ["notes.txt", "mp3", ".mp3x", "song.mp3.txt", "image.png", "archive.zip", "README"]
)
def test_is_audio_path_rejects_other_files(name: str) -> None:
    assert not is_audio_path(Path(name))


def test_audio_extensions_cover_every_fixture_format() -> None:
    assert all(ext.startswith(".") and ext == ext.lower() for ext in AUDIO_EXTENSIONS)
    assert {fmt.suffix for fmt in af.FORMATS.values()} <= AUDIO_EXTENSIONS
