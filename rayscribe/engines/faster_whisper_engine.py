"""faster-whisper backend: the batched, VAD-chunked pipeline, extended to batch speech chunks across files.

``BatchedInferencePipeline.transcribe`` handles one file at a time, so a thousand 5 s clips would run a
thousand under-filled model batches. Here each file's audio is cut into VAD chunks exactly as the pipeline
does it, the chunks of all files go into shared model batches, and each file's timestamps are restored
afterwards. One file gives the same result as the upstream pipeline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import (
    Segment as FwSegment,
)
from faster_whisper.transcribe import (
    TranscriptionOptions,
    get_suppressed_tokens,
    restore_speech_timestamps,
)
from faster_whisper.transcribe import (
    Word as FwWord,
)
from faster_whisper.vad import collect_chunks

from rayscribe.audio import SAMPLE_RATE
from rayscribe.config.settings import Settings
from rayscribe.engines.base import TranscribeOptions, WhisperEngine
from rayscribe.errors import ModelNotAvailableError
from rayscribe.splitting import fill_speech_clips
from rayscribe.transcript import Segment, Transcript, Word

log = logging.getLogger(__name__)

CHUNK_SECONDS = 30
# Audio per packed window; below 30 s so a window never ends in the middle of a file.
PACK_WINDOW_SECONDS = 29.0
# Silence put between packed files, so the model hears a pause at each file boundary.
PACK_GAP_SECONDS = 1.0
# A packed file whose words start later or end earlier than its speech by more than this lost some of it in the
# shared window (see ``_lost_speech``) and is decoded again on its own. Correct files here are within 1 s.
PACK_SLACK_SECONDS = 1.5
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


@dataclass
class _FilePlan:
    """One file cut into VAD chunks, waiting for its chunks' decoded segments."""

    index: int
    duration: float
    language: str
    language_probability: float
    clip_timestamps: list[dict]
    metadata: list[dict]
    features: list[np.ndarray]
    outputs: list[list[dict]] = field(default_factory=list)


def _speech_span(clips: list[dict]) -> float:
    return (clips[-1]["end"] - clips[0]["start"]) / SAMPLE_RATE if clips else 0.0


def _lost_speech(transcript: Transcript, clips: list[dict]) -> bool:
    """Whether a file unpacked from a shared window misses speech that voice detection found in it: no words,
    or words that start later or end earlier than its speech by more than ``PACK_SLACK_SECONDS``."""
    if not clips:
        return False
    words = transcript.words
    if not words:
        return True
    start, end = clips[0]["start"] / SAMPLE_RATE, clips[-1]["end"] / SAMPLE_RATE
    return words[0].start > start + PACK_SLACK_SECONDS or words[-1].end < end - PACK_SLACK_SECONDS


def _distance(t: float, span: tuple[float, float]) -> float:
    return 0.0 if span[0] <= t <= span[1] else min(abs(t - span[0]), abs(t - span[1]))


class FasterWhisperEngine(WhisperEngine):
    """Whisper on CTranslate2 with Silero VAD chunking and native word timestamps; needs no torch."""

    backend = "faster-whisper"
    batches_across_files = True

    def __init__(self, settings: Settings) -> None:
        path, threads = self._prepare(settings)
        started = time.perf_counter()
        try:
            self.model = WhisperModel(
                path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=threads,
                download_root=settings.model_dir,
            )
        except Exception as exc:
            if "LocalEntryNotFoundError" in type(exc).__name__ or "offline" in str(exc).lower() or (
                "hub" in str(exc).lower()
            ):
                raise ModelNotAvailableError(
                    f"Whisper model {settings.model!r} is not available locally and could not be downloaded "
                    f"({exc}); set RAYSCRIBE_MODEL to a CTranslate2 folder or to tiny.en (bundled)"
                ) from None
            raise
        self.load_seconds = time.perf_counter() - started
        self.vad_threads = threads  # the voice-activity pass of a long file runs on the worker's CPU share too
        self.pipeline = BatchedInferencePipeline(self.model)
        log.info(
            "model loaded: %s (faster-whisper, %s/%s, %d threads) in %.2f s",
            self.model_name, self.device, self.compute_type, threads, self.load_seconds,
        )

    # -- planning -------------------------------------------------------------------------------------

    def _plan(self, index: int, audio: np.ndarray, language: str | None, clips: list[dict]) -> _FilePlan:
        """Cut one (possibly packed) audio into ≤ 30 s windows of its speech ``clips``, with their features."""
        duration = audio.shape[0] / SAMPLE_RATE
        chunks, metadata = collect_chunks(audio, clips, max_duration=CHUNK_SECONDS)
        features = [self.model.feature_extractor(c)[..., :-1] for c in chunks] if clips else []
        probability = 1.0
        if language is None:
            if not self.model.model.is_multilingual:
                language = "en"
            elif features:
                language, probability = self._detect_features(features[0])
            else:
                language = "en"
        elif not self.model.model.is_multilingual and language != "en":
            log.warning("model %s is English-only; ignoring language %r", self.model_name, language)
            language = "en"
        return _FilePlan(index, duration, language, float(probability), clips, metadata[: len(features)],
                         features)

    @property
    def multilingual(self) -> bool:
        """Whether the model knows languages other than English (``.en`` models do not)."""
        return bool(self.model.model.is_multilingual)

    def knows(self, language: str) -> bool:
        """Whether the model's vocabulary has ``language`` (Whisper's list has Cantonese, but only large-v3 and
        the models built on it have its token)."""
        if not self.multilingual:
            return language == "en"
        return self.model.hf_tokenizer.token_to_id(f"<|{language}|>") is not None

    def detect(self, audio: np.ndarray, clips: list[dict]) -> tuple[str, float]:
        """The language of a file's first speech (its first ≤ 30 s window of voice-detected ``clips``, so
        leading silence or music never decides it) and its probability; ``("en", 0.0)`` without speech."""
        if not clips or not self.multilingual:
            return "en", 0.0 if not clips else 1.0
        chunks, _ = collect_chunks(audio, clips, max_duration=CHUNK_SECONDS)
        return self._detect_features(self.model.feature_extractor(chunks[0])[..., :-1])

    def _detect_features(self, features: np.ndarray) -> tuple[str, float]:
        """Whisper's language detection on one window of features (as faster-whisper's own pipeline does it)."""
        dummy = np.full((self.model.model.n_mels, 1), -1.5, dtype="float32")
        language, probability, _ = self.model.detect_language(
            features=np.concatenate([features, dummy], axis=1),
            language_detection_segments=1,
            language_detection_threshold=0.5,
        )
        return language, float(probability)

    def _options(self, tokenizer: Tokenizer, options: TranscribeOptions) -> TranscriptionOptions:
        return TranscriptionOptions(
            beam_size=options.beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
            no_repeat_ngram_size=0, log_prob_threshold=-1.0, no_speech_threshold=0.6,
            compression_ratio_threshold=2.4, temperatures=[options.temperature],
            initial_prompt=options.initial_prompt, prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            prepend_punctuations=PREPEND_PUNCTUATIONS, append_punctuations=APPEND_PUNCTUATIONS,
            max_new_tokens=None, hotwords=None, word_timestamps=options.word_timestamps,
            hallucination_silence_threshold=None, condition_on_previous_text=False,
            clip_timestamps=[], prompt_reset_on_temperature=0.5, multilingual=False,
            without_timestamps=True, max_initial_timestamp=0.0,
        )

    # -- decoding -------------------------------------------------------------------------------------

    def transcribe_many(self, audios: list[np.ndarray], options: TranscribeOptions,
                        speech: list[list[dict] | None] | None = None) -> list[Transcript]:
        clips = fill_speech_clips(audios, speech, self.vad_threads)
        bins = self._bins(audios, clips, options)
        packed = {i for members in bins for i in members}
        plans = [self._plan(i, a, options.language, clips[i]) for i, a in enumerate(audios) if i not in packed]
        bin_plans = []
        for number, members in enumerate(bins):
            audio, offsets, placed, window = self._pack([audios[i] for i in members], [clips[i] for i in members])
            plan = self._plan(-1 - number, audio, options.language, window)
            bin_plans.append((members, offsets, placed, plan))
        self._decode_plans(plans + [plan for *_, plan in bin_plans], options)
        results: dict[int, Transcript] = {p.index: self._to_transcript(p, options) for p in plans}
        for members, offsets, placed, plan in bin_plans:
            unpacked = self._unpack(self._to_transcript(plan, options), offsets, placed,
                                    [audios[i] for i in members])
            results.update(zip(members, unpacked))
        # Whisper can end a shared window early (the end-of-text token after the first file) or drift its
        # timestamps so that words land in a neighbour: that file's speech would be lost without an error.
        redo = [i for members, *_ in bin_plans for i in members if _lost_speech(results[i], clips[i])]
        if redo:
            log.info("%d of %d packed files lost speech in their shared window; decoding them alone", len(redo),
                     len(packed))
            alone = [self._plan(i, audios[i], options.language, clips[i]) for i in redo]
            self._decode_plans(alone, options)
            results.update({p.index: self._to_transcript(p, options) for p in alone})
        return [results[i] for i in range(len(audios))]

    # -- packing short files --------------------------------------------------------------------------

    def _bins(self, audios: list[np.ndarray], clips: list[list[dict]], options: TranscribeOptions) -> list[list[int]]:
        """Group whole short files into bins that fit one 30 s window with silence between them; a file is
        never split across windows. Needs word times (to split files apart again) and an English-only model:
        multilingual models lose words at the file boundaries of a packed window (base on the Spanish dev clips:
        13 word errors packed, 9 alone, docs/languages.md), so their files share model batches but not windows."""
        if len(audios) < 2 or not options.word_timestamps:
            return []
        if self.model.model.is_multilingual:
            return []
        bins: list[list[int]] = []
        current: list[int] = []
        filled = 0.0
        for i in range(len(audios)):
            length = _speech_span(clips[i]) + PACK_GAP_SECONDS
            if not clips[i] or length > PACK_WINDOW_SECONDS:
                continue
            if current and filled + length > PACK_WINDOW_SECONDS:
                bins.append(current)
                current, filled = [], 0.0
            current.append(i)
            filled += length
        if current:
            bins.append(current)
        return [b for b in bins if len(b) > 1]

    @staticmethod
    def _pack(
        audios: list[np.ndarray], clips: list[list[dict]]
    ) -> tuple[np.ndarray, list[float], list[tuple[float, float]], list[dict]]:
        """Lay the files' speech (first to last speech sample, pauses kept) end to end with silence between
        them, as one clip: the model hears each file as it is, with a clear pause at every file boundary."""
        gap = np.zeros(int(PACK_GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
        pieces: list[np.ndarray] = []
        offsets: list[float] = []
        placed: list[tuple[float, float]] = []
        position = 0
        for audio, file_clips in zip(audios, clips):
            first, last = (file_clips[0]["start"], file_clips[-1]["end"]) if file_clips else (0, 0)
            pieces.extend([gap, audio[first:last]])
            position += gap.shape[0]
            offsets.append((position - first) / SAMPLE_RATE)  # time in the packed audio of the file's t=0
            placed.append((position / SAMPLE_RATE, (position + last - first) / SAMPLE_RATE))
            position += last - first
        pieces.append(gap)
        packed = np.concatenate(pieces)
        return packed, offsets, placed, [{"start": 0, "end": packed.shape[0]}]

    @staticmethod
    def _unpack(packed: Transcript, offsets: list[float], placed: list[tuple[float, float]],
                audios: list[np.ndarray]) -> list[Transcript]:
        """Give each word back to the file whose span holds its midpoint; rebuild that file's segments."""
        durations = [audio.shape[0] / SAMPLE_RATE for audio in audios]
        per_file: list[list[Segment]] = [[] for _ in audios]
        for segment in packed.segments:
            current: dict[int, list[Word]] = {}
            for word in segment.words:
                middle = (word.start + word.end) / 2
                k = min(range(len(placed)), key=lambda j: _distance(middle, placed[j]))
                shifted = Word(
                    start=round(min(max(word.start - offsets[k], 0.0), durations[k]), 3),
                    end=round(min(max(word.end - offsets[k], 0.0), durations[k]), 3),
                    word=word.word, probability=word.probability,
                )
                current.setdefault(k, []).append(shifted)
            for k, words in current.items():
                per_file[k].append(
                    Segment(
                        id=len(per_file[k]), start=words[0].start, end=words[-1].end,
                        text="".join(w.word for w in words).strip(), words=words,
                        avg_logprob=segment.avg_logprob, no_speech_prob=segment.no_speech_prob,
                        compression_ratio=segment.compression_ratio, temperature=segment.temperature,
                    )
                )
        return [
            Transcript(segments=per_file[k], language=packed.language, duration=durations[k],
                       language_probability=packed.language_probability)
            for k in range(len(audios))
        ]

    def _decode_plans(self, plans: list[_FilePlan], options: TranscribeOptions) -> None:
        """Decode the plans' windows, one group per language (the prompt's language token differs)."""
        for language in sorted({p.language for p in plans}):
            self._decode_group([p for p in plans if p.language == language], language, options)

    def _decode_group(self, plans: list[_FilePlan], language: str, options: TranscribeOptions) -> None:
        tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual,
                              task=options.task, language=language)
        fw_options = self._options(tokenizer, options)
        work = [(p, k) for p in plans for k in range(len(p.features))]
        for plan in plans:
            plan.outputs = [[] for _ in plan.features]
        for start in range(0, len(work), options.batch_size):
            batch = work[start : start + options.batch_size]
            features = np.stack([pad_or_trim(p.features[k]) for p, k in batch])
            metadata = [p.metadata[k] for p, k in batch]
            # The pipeline's word-timing heuristic carries the last word's end time between chunks; chunks
            # of different files must not leak it into each other, so each batch starts afresh.
            self.pipeline.last_speech_timestamp = 0.0
            results = self.pipeline.forward(features, tokenizer, metadata, fw_options)
            for (plan, k), result in zip(batch, results):
                plan.outputs[k] = result
        self.pipeline.last_speech_timestamp = 0.0

    def _to_transcript(self, plan: _FilePlan, options: TranscribeOptions) -> Transcript:
        def raw_segments():  # same construction as BatchedInferencePipeline._batched_segments_generator
            seg_id = 0
            for chunk in plan.outputs:
                for s in chunk:
                    seg_id += 1
                    yield FwSegment(
                        seek=s["seek"], id=seg_id, text=s["text"], start=round(s["start"], 3),
                        end=round(s["end"], 3),
                        words=[FwWord(**w) for w in s["words"]] if options.word_timestamps else None,
                        tokens=s["tokens"], avg_logprob=s["avg_logprob"], no_speech_prob=s["no_speech_prob"],
                        compression_ratio=s["compression_ratio"], temperature=options.temperature,
                    )

        segments: list[Segment] = []
        for s in restore_speech_timestamps(raw_segments(), plan.clip_timestamps, SAMPLE_RATE):
            words = [
                Word(start=float(w.start), end=float(w.end), word=w.word, probability=float(w.probability))
                for w in (s.words or [])
            ]
            segments.append(
                Segment(
                    id=len(segments), start=float(s.start), end=float(s.end), text=s.text.strip(), words=words,
                    avg_logprob=float(s.avg_logprob), no_speech_prob=float(s.no_speech_prob),
                    compression_ratio=float(s.compression_ratio), temperature=float(s.temperature or 0.0),
                )
            )
        return Transcript(segments=segments, language=plan.language, duration=plan.duration,
                          language_probability=plan.language_probability)
