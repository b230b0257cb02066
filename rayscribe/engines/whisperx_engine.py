"""WhisperX backend: the WhisperX pipeline (pyannote VAD + batched CTranslate2 Whisper), then wav2vec2
alignment for word timestamps and pyannote diarization for speakers where their models are present.

What needs the network, and what does not:

* VAD: WhisperX's pyannote segmentation checkpoint ships inside the ``whisperx`` package
  (``whisperx/assets/pytorch_model.bin``) and is loaded from that file, so VAD never downloads anything. (The
  other VAD, Silero, is fetched with ``torch.hub`` from GitHub, so it is not used.)
* Whisper: a local CTranslate2 folder (``tiny.en`` resolves to the bundled one); other names go to the hub.
* Alignment (torchaudio / Hugging Face wav2vec2 checkpoints, plus NLTK's ``punkt_tab`` sentence splitter) and
  diarization (``pyannote/speaker-diarization-community-1``, gated) come from model hubs. When one is missing,
  the transcript still comes out without that stage, a WARNING names the model and what to do, and the failure
  is remembered so it is not retried for every file. :meth:`WhisperXEngine.check_models` lists them up front.

In offline mode (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set) no download is ever attempted: only local
caches are looked at. Only a Whisper model that cannot be loaded is fatal (:class:`ModelNotAvailableError`).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

# pyannote.audio sends usage metrics unless told not to; it reads this once, when it is first imported.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
# pyannote warns at import that torchcodec cannot decode files; rayscribe only ever hands it decoded arrays.
warnings.filterwarnings("ignore", message=r"\s*torchcodec is not installed correctly", category=UserWarning)

import torch  # noqa: E402
import torchaudio  # noqa: E402
import whisperx  # noqa: E402
from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH  # noqa: E402
from whisperx.asr import WhisperModel as WhisperXModel  # noqa: E402
from whisperx.utils import PUNKT_LANGUAGES  # noqa: E402

from rayscribe.audio import SAMPLE_RATE  # noqa: E402
from rayscribe.config.settings import Settings  # noqa: E402
from rayscribe.engines.base import TranscribeOptions, WhisperEngine  # noqa: E402
from rayscribe.errors import ModelNotAvailableError  # noqa: E402
from rayscribe.transcript import Segment, Transcript, Word  # noqa: E402

log = logging.getLogger(__name__)

DIARIZE_MODEL = "pyannote/speaker-diarization-community-1"  # whisperx 3.8's default diarization pipeline
TORCHAUDIO_MODELS_URL = "https://download.pytorch.org/torchaudio/models/"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Whether model hubs must not be contacted (read at call time, not at import time)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in OFFLINE_VARIABLES)


def _is_missing_model_error(exc: Exception) -> bool:
    """Errors that mean "this Whisper model is not here / cannot be fetched", not a bad configuration."""
    if type(exc).__module__.startswith("huggingface_hub") or isinstance(exc, OSError):
        return True
    text = str(exc)
    return ("Invalid model size" in text) or ("model.bin" in text) or ("Unable to open file" in text)


def _finite(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


class WhisperXEngine(WhisperEngine):
    """The WhisperX pipeline, one file at a time, with optional alignment and diarization stages."""

    backend = "whisperx"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        path, threads = self._prepare(settings)
        if self.device == "cpu":
            # VAD, alignment and diarization run on torch; keep them inside the worker's CPU share.
            torch.set_num_threads(threads)
        started = time.perf_counter()
        try:
            model = WhisperXModel(
                path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=threads,
                download_root=settings.model_dir,
                local_files_only=hub_offline(),
            )
        except Exception as exc:
            if not _is_missing_model_error(exc):
                raise
            raise ModelNotAvailableError(
                f"Whisper model {settings.model!r} cannot be loaded ({type(exc).__name__}: {exc}); set "
                "RAYSCRIBE_MODEL to a CTranslate2 folder or to tiny.en (bundled)"
            ) from None
        self.multilingual = bool(model.model.is_multilingual)
        preset = settings.language if self.multilingual else "en"
        # vad_method="pyannote" loads the segmentation checkpoint bundled in the whisperx package (no
        # download); vad_method="silero" would fetch its model with torch.hub.
        self.pipeline = whisperx.load_model(
            path,
            self.device,
            compute_type=self.compute_type,
            asr_options={"beam_size": settings.beam_size},
            language=preset,
            vad_method="pyannote",
            model=model,
            threads=threads,
            download_root=settings.model_dir,
            local_files_only=hub_offline(),
        )
        self.load_seconds = time.perf_counter() - started
        self._align_models: dict[str, tuple[Any, dict]] = {}
        self._diarizer: Any = None
        # Stage key ("align:<lang>", "diarize") -> the warning already logged; such stages are not retried.
        self._unavailable: dict[str, str] = {}
        log.info(
            "model loaded: %s (whisperx, %s/%s, %d threads, pyannote VAD, align=%s, diarize=%s) in %.2f s",
            self.model_name, self.device, self.compute_type, threads, settings.whisperx_align,
            settings.diarize, self.load_seconds,
        )

    # -- availability of the hub models ---------------------------------------------------------------

    def _align_name(self, language: str) -> str | None:
        if self.settings.align_model:
            return self.settings.align_model
        return DEFAULT_ALIGN_MODELS_TORCH.get(language) or DEFAULT_ALIGN_MODELS_HF.get(language)

    def _missing_align(self, language: str) -> str | None:
        """Why alignment for ``language`` cannot run from local files alone, or ``None`` when it can."""
        name = self._align_name(language)
        if name is None:
            return (
                f"no default alignment model for language {language!r}; word timestamps disabled; set "
                "RAYSCRIBE_ALIGN_MODEL to a wav2vec2 CTC model (hub id or folder) or "
                "RAYSCRIBE_WHISPERX_ALIGN=false"
            )
        model_dir = self.settings.model_dir
        if name in torchaudio.pipelines.__all__:
            remote = str(torchaudio.pipelines.__dict__[name]._path)
            url = remote if remote.startswith("https") else TORCHAUDIO_MODELS_URL + remote
            filename = os.path.basename(url)
            folder = model_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
            if not os.path.isfile(os.path.join(folder, filename)):
                return (
                    f"alignment model {name} (torchaudio, {url}) for {language!r} is not available "
                    f"offline; word timestamps disabled; pre-download it into {folder} or set "
                    "RAYSCRIBE_WHISPERX_ALIGN=false"
                )
        elif not Path(name).is_dir():
            from huggingface_hub import try_to_load_from_cache

            if not isinstance(try_to_load_from_cache(name, "config.json", cache_dir=model_dir), str):
                return (
                    f"alignment model {name} for {language!r} is not available offline; word timestamps "
                    f"disabled; pre-download it (huggingface-cli download {name}) or set "
                    "RAYSCRIBE_WHISPERX_ALIGN=false"
                )
        punkt = PUNKT_LANGUAGES.get(language, "english")
        try:
            import nltk

            nltk.data.find(f"tokenizers/punkt_tab/{punkt}/")
        except LookupError:
            return (
                f"NLTK sentence splitter punkt_tab ({punkt}), needed by alignment model {name} for "
                f"{language!r}, is not available offline; word timestamps disabled; pre-download it "
                "(python -m nltk.downloader punkt_tab) or set RAYSCRIBE_WHISPERX_ALIGN=false"
            )
        return None

    def _missing_diarize(self) -> str | None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(DIARIZE_MODEL, "config.yaml", cache_dir=self.settings.model_dir)
        if isinstance(cached, str):
            return None
        return (
            f"diarization model {DIARIZE_MODEL} is not available offline; speakers disabled; accept its "
            f"conditions on https://hf.co/{DIARIZE_MODEL} and pre-download it with RAYSCRIBE_HF_TOKEN set "
            "(huggingface-cli download), or set RAYSCRIBE_DIARIZE=false"
        )

    def check_models(self) -> list[str]:
        """Human messages for the alignment / diarization models the settings need but that are not present
        locally (or that failed to load); empty when every enabled stage can run. Never downloads."""
        messages: list[str] = []
        if self.settings.whisperx_align:
            languages = [self.settings.language if self.multilingual else "en"]
            languages += [k.split(":", 1)[1] for k in self._unavailable if k.startswith("align:")]
            for language in dict.fromkeys(lang for lang in languages if lang):
                message = self._unavailable.get(f"align:{language}")
                if message is None and language not in self._align_models:
                    message = self._missing_align(language)
                if message:
                    messages.append(message)
        if self.settings.diarize:
            message = self._unavailable.get("diarize")
            if message is None and self._diarizer is None:
                message = self._missing_diarize()
            if message:
                messages.append(message)
        return messages

    def _give_up(self, key: str, message: str) -> None:
        self._unavailable[key] = message
        log.warning("%s", message)

    # -- the optional stages --------------------------------------------------------------------------

    def _align_model(self, language: str) -> tuple[Any, dict] | None:
        key = f"align:{language}"
        if key in self._unavailable:
            return None
        if language in self._align_models:
            return self._align_models[language]
        missing = self._missing_align(language)
        if missing and (hub_offline() or self._align_name(language) is None):
            self._give_up(key, missing)
            return None
        name = self._align_name(language)
        started = time.perf_counter()
        try:
            loaded = whisperx.load_align_model(
                language, self.device, model_name=self.settings.align_model,
                model_dir=self.settings.model_dir, model_cache_only=hub_offline(),
            )
        except Exception as exc:
            self._give_up(
                key,
                f"alignment model {name} for {language!r} could not be loaded ({type(exc).__name__}: {exc}); "
                "word timestamps disabled; pre-download it or set RAYSCRIBE_WHISPERX_ALIGN=false",
            )
            return None
        log.info("alignment model loaded: %s for %r in %.2f s", name, language, time.perf_counter() - started)
        self._align_models[language] = loaded
        return loaded

    def _diarization(self) -> Any:
        if "diarize" in self._unavailable:
            return None
        if self._diarizer is not None:
            return self._diarizer
        missing = self._missing_diarize()
        if missing and hub_offline():
            self._give_up("diarize", missing)
            return None
        from whisperx.diarize import DiarizationPipeline

        started = time.perf_counter()
        try:
            self._diarizer = DiarizationPipeline(
                model_name=DIARIZE_MODEL, token=self.settings.hf_token, device=self.device,
                cache_dir=self.settings.model_dir,
            )
        except Exception as exc:
            self._give_up(
                "diarize",
                f"diarization model {DIARIZE_MODEL} could not be loaded ({type(exc).__name__}: {exc}); "
                f"speakers disabled; accept its conditions on https://hf.co/{DIARIZE_MODEL}, set "
                "RAYSCRIBE_HF_TOKEN, or set RAYSCRIBE_DIARIZE=false",
            )
            return None
        log.info("diarization model loaded: %s in %.2f s", DIARIZE_MODEL, time.perf_counter() - started)
        return self._diarizer

    # -- decoding -------------------------------------------------------------------------------------

    def _language(self, requested: str | None) -> str | None:
        if not self.multilingual:
            if requested not in (None, "en"):
                log.warning("model %s is English-only; ignoring language %r", self.model_name, requested)
            return "en"
        return requested

    def transcribe_many(self, audios: list[np.ndarray], options: TranscribeOptions,
                        speech: list[list[dict] | None] | None = None) -> list[Transcript]:
        # WhisperX batches the VAD chunks of one file; files go through one after the other.
        self.pipeline.options = replace(
            self.pipeline.options, beam_size=options.beam_size, initial_prompt=options.initial_prompt
        )
        language = self._language(options.language)
        return [self._transcribe_one(audio, language, options) for audio in audios]

    def _transcribe_one(
        self, audio: np.ndarray, language: str | None, options: TranscribeOptions
    ) -> Transcript:
        # Arrays from Ray's object store are read-only; torch.from_numpy needs a writable one.
        samples = np.array(audio, dtype=np.float32, copy=True)
        duration = samples.shape[0] / SAMPLE_RATE
        started = time.perf_counter()
        result: dict[str, Any] = dict(
            self.pipeline.transcribe(samples, batch_size=options.batch_size, language=language)
        )
        detected = str(result.get("language") or language or "en")
        timings = {"asr": time.perf_counter() - started}
        if self.settings.whisperx_align and options.word_timestamps and result["segments"]:
            aligner = self._align_model(detected)
            if aligner is not None:
                started = time.perf_counter()
                try:
                    aligned = whisperx.align(
                        result["segments"], aligner[0], aligner[1], samples, self.device,
                        return_char_alignments=False,
                    )
                    result = {"segments": aligned["segments"], "language": detected}
                except Exception as exc:  # one file's alignment failing must not lose its transcript
                    log.warning("alignment failed (%s: %s); this file keeps segment times only",
                                type(exc).__name__, exc)
                timings["align"] = time.perf_counter() - started
        if self.settings.diarize and result["segments"]:
            diarizer = self._diarization()
            if diarizer is not None:
                started = time.perf_counter()
                try:
                    result = dict(whisperx.assign_word_speakers(diarizer(samples), result))
                except Exception as exc:
                    log.warning("diarization failed (%s: %s); this file has no speakers",
                                type(exc).__name__, exc)
                timings["diarize"] = time.perf_counter() - started
        log.debug("whisperx %.1f s of audio: %s", duration,
                  ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
        return self._to_transcript(result["segments"], detected, duration)

    @staticmethod
    def _to_transcript(raw_segments: list[dict], language: str, duration: float) -> Transcript:
        segments: list[Segment] = []
        for raw in raw_segments:
            text = str(raw.get("text", "")).strip()
            if not text:
                continue
            start = min(max(_finite(raw.get("start"), 0.0), 0.0), duration)
            end = min(max(_finite(raw.get("end"), start), start), duration)
            words: list[Word] = []
            for w in raw.get("words") or []:
                token = str(w.get("word", "")).strip()
                if not token:
                    continue
                # Unalignable words have no times: they take the previous word's end (or the segment start).
                previous = words[-1].end if words else start
                w_start = min(max(_finite(w.get("start"), previous), 0.0), duration)
                w_end = min(max(_finite(w.get("end"), w_start), w_start), duration)
                # Same convention as faster-whisper: each word carries its leading space.
                words.append(Word(start=round(w_start, 3), end=round(w_end, 3), word=" " + token,
                                  probability=_finite(w.get("score"), 0.0)))
            segments.append(
                Segment(
                    id=len(segments), start=round(start, 3), end=round(end, 3), text=text, words=words,
                    avg_logprob=_finite(raw.get("avg_logprob"), 0.0), speaker=raw.get("speaker"),
                )
            )
        segments.sort(key=lambda s: (s.start, s.end))
        for i, segment in enumerate(segments):
            segment.id = i
        return Transcript(segments=segments, language=language, duration=duration)
