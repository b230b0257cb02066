"""Audio understanding with Mistral's Voxtral (transformers ``VoxtralForConditionalGeneration``): summaries,
free questions about the audio, and transcription.

Ray-free, and importable without the ``voxtral`` extra: torch and transformers are imported when a model is
loaded, and a missing extra is reported as a :class:`ModelNotAvailableError` naming the install command.

Device and precision: CUDA in float16 when torch sees a GPU (a T4 has no bfloat16), else CPU in float32. Before
weights go to a GPU, its free memory is compared with what the model needs (parameters x 2 bytes + a headroom
setting), so a GPU that is too full fails with a message instead of an out-of-memory crash mid-load.

Long audio, the policy: the processor cuts audio into 30 s windows for the encoder and puts all of them in one
prompt (12.5 audio tokens per second), so one pass takes audio up to ``RAYSCRIBE_VOXTRAL_MAX_AUDIO_SECONDS`` or
what fits the model's context beside the answer, whichever is less (the *window*). Longer audio: ``transcribe``
is cut into consecutive pieces of the window and their texts joined (a transcript of pieces is still the
transcript); ``summary`` and ``question`` are refused with an :class:`AnalysisRequestError` naming the limit (a
summary of pieces is not a summary of the whole).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rayscribe.audio import SAMPLE_RATE
from rayscribe.config.voxtral import VoxtralSettings
from rayscribe.errors import ModelNotAvailableError, RayscribeError

log = logging.getLogger("rayscribe.voxtral")

Task = Literal["summary", "question", "transcribe"]
TASKS: tuple[str, ...] = ("summary", "question", "transcribe")
CHUNK_SECONDS = 30.0  # the encoder's window; audio is padded to a multiple of it
AUDIO_TOKENS_PER_SECOND = 12.5  # Voxtral's audio frame rate after the projector
PROMPT_RESERVE_TOKENS = 64  # instruction framing around the audio, beyond the prompt's own tokens
GB = 1024**3


class AnalysisRequestError(RayscribeError):
    """The request cannot be answered as asked (unknown task, missing question, audio over the limit)."""


class GPUMemoryError(RayscribeError):
    """The GPU has too little free memory for the model; the message says how much is needed and free."""


@dataclass(frozen=True)
class AnalyzeOptions:
    """What one request may choose; ``None`` fields come from settings."""

    task: Task = "summary"
    prompt: str | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    language: str | None = None


@dataclass
class Analysis:
    """One answer about one audio: the text, what was asked, the token counts and where the time went."""

    task: str
    text: str
    model: str
    prompt: str | None
    audio_seconds: float
    pieces: int
    input_tokens: int
    output_tokens: int
    truncated: bool
    device: str
    dtype: str
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- pure helpers (testable without a model) --------------------------------------------------------------


def audio_tokens(seconds: float) -> int:
    """Audio tokens Voxtral spends on ``seconds`` of audio (padded to whole 30 s windows)."""
    return int(math.ceil(max(seconds, 1e-9) / CHUNK_SECONDS) * CHUNK_SECONDS * AUDIO_TOKENS_PER_SECOND)


def window_seconds(context_tokens: int, max_new_tokens: int, max_audio_seconds: float,
                   prompt_tokens: int = 0) -> float:
    """The longest audio one pass takes: the setting's limit or what fits the context beside prompt and answer,
    in whole 30 s windows; 0 when not even one window fits."""
    room = context_tokens - max_new_tokens - PROMPT_RESERVE_TOKENS - prompt_tokens
    windows = room // int(CHUNK_SECONDS * AUDIO_TOKENS_PER_SECOND)
    return float(min(max_audio_seconds, max(0, windows) * CHUNK_SECONDS))


def plan_pieces(seconds: float, task: str, window: float) -> list[tuple[float, float]]:
    """Where to cut ``seconds`` of audio for one task (see the module's policy); raises when it can't be done."""
    if window <= 0:
        raise AnalysisRequestError(
            "the model's context has no room for even 30 s of audio beside the answer; lower "
            "RAYSCRIBE_VOXTRAL_MAX_NEW_TOKENS")
    if seconds <= window:
        return [(0.0, seconds)]
    if task != "transcribe":
        raise AnalysisRequestError(
            f"the audio is {seconds:.1f} s long; a {task} covers at most {window:.0f} s in one pass "
            f"(RAYSCRIBE_VOXTRAL_MAX_AUDIO_SECONDS and the model's context); send a shorter clip, or use the "
            "transcribe task, which is cut into pieces")
    count = math.ceil(seconds / window)
    return [(i * window, min(seconds, (i + 1) * window)) for i in range(count)]


def gpu_memory_problem(free_bytes: int, need_bytes: int, total_bytes: int | None = None,
                       device: str = "cuda:0") -> str | None:
    """``None`` when ``need_bytes`` fit in ``free_bytes``; otherwise a message saying what is needed, what is
    free and what to do."""
    if need_bytes <= free_bytes:
        return None
    total = f" of {total_bytes / GB:.1f} GB" if total_bytes else ""
    return (f"not enough GPU memory on {device} for Voxtral: it needs about {need_bytes / GB:.1f} GB (weights in "
            f"float16 + RAYSCRIBE_VOXTRAL_MEMORY_HEADROOM_GB) but only {free_bytes / GB:.1f} GB{total} is free; "
            "free the GPU (fewer or smaller Whisper workers beside it, see the README's memory table), use a GPU "
            "with more memory, or set RAYSCRIBE_VOXTRAL_DEVICE=cpu")


def memory_need_bytes(parameters: int, bytes_per_parameter: int, headroom_gb: float) -> int:
    """Weights plus headroom for activations and the KV cache."""
    return int(parameters * bytes_per_parameter + headroom_gb * GB)


def count_parameters(config: Any) -> int:
    """Parameters of a Voxtral model with ``config``, counted on torch's meta device (nothing allocated)."""
    import torch
    from transformers import VoxtralForConditionalGeneration
    from transformers.modeling_utils import no_init_weights

    with torch.device("meta"), no_init_weights():
        model = VoxtralForConditionalGeneration(config)
    return int(sum(p.numel() for p in model.parameters()))


def model_label(model: str) -> str:
    """What answers report as ``model``: a hub id as is, a local folder by its name."""
    path = Path(model).expanduser()
    return path.name if path.exists() else model


def build_prompt(options: AnalyzeOptions, settings: VoxtralSettings) -> str | None:
    """The instruction sent with the audio, or ``None`` for ``transcribe``; checks the task and prompt."""
    if options.task not in TASKS:
        raise AnalysisRequestError(f"unknown task {options.task!r}; use one of {', '.join(TASKS)}")
    prompt = (options.prompt or "").strip() or None
    if options.task == "question":
        if prompt is None:
            raise AnalysisRequestError("the question task needs a prompt: the question to ask about the audio")
        return prompt
    if options.task == "summary":
        return prompt or settings.voxtral_summary_prompt
    return None


# -- the engine ----------------------------------------------------------------------------------------------


class VoxtralEngine:
    """A loaded Voxtral model and processor; :meth:`analyze` turns 16 kHz mono float32 audio into an
    :class:`Analysis`. Not thread-safe: callers run one request at a time."""

    def __init__(self, settings: VoxtralSettings) -> None:
        self.settings = settings
        self.model_name = model_label(settings.voxtral_model)
        started = time.perf_counter()
        self._load()
        self.load_seconds = time.perf_counter() - started
        log.info("Voxtral model loaded: %s on %s (%s) in %.1f s, %.1fM parameters", self.model_name, self.device,
                 self.dtype_name, self.load_seconds, self.parameters / 1e6)

    # -- loading ------------------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            import torch
            from transformers import AutoConfig, VoxtralForConditionalGeneration, VoxtralProcessor
        except ImportError as exc:
            raise ModelNotAvailableError(
                f"Voxtral needs the 'voxtral' extra (torch, transformers, mistral-common[audio]); install it with "
                f"pip install 'rayscribe[voxtral]' (missing: {exc.name})") from None
        self.device = self._choose_device(torch)
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.dtype_name = str(self.dtype).removeprefix("torch.")
        if self.device == "cpu":
            torch.set_num_threads(self.settings.voxtral_cpu_threads or max(1, round(self.settings.voxtral_cpus)))
        source = self.settings.voxtral_model
        try:
            config = AutoConfig.from_pretrained(source)
            self.parameters = count_parameters(config)
            if self.device == "cuda":
                self._check_gpu_memory(torch)
            self.processor: Any = VoxtralProcessor.from_pretrained(source)
            model = VoxtralForConditionalGeneration.from_pretrained(source, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            raise ModelNotAvailableError(self._not_available(source, exc)) from None
        self.model = model.to(self.device).eval()
        self.context_tokens = int(config.text_config.max_position_embeddings)
        self.audio_token_id = int(config.audio_token_id)
        tokenizer: Any = getattr(self.processor, "tokenizer")  # noqa: B009 - typed stubs lack the attribute
        self.eos_token_id = int(tokenizer.eos_token_id)

    def _choose_device(self, torch: Any) -> str:
        wanted = self.settings.voxtral_device
        has_cuda = bool(torch.cuda.is_available())
        if wanted == "cuda" and not has_cuda:
            raise ModelNotAvailableError("RAYSCRIBE_VOXTRAL_DEVICE=cuda but torch sees no CUDA device; use auto or cpu")
        device = "cuda" if wanted == "cuda" or (wanted == "auto" and has_cuda) else "cpu"
        log.info("Voxtral device: %s (torch sees %d CUDA device(s))", device,
                 torch.cuda.device_count() if has_cuda else 0)
        return device

    def _check_gpu_memory(self, torch: Any) -> None:
        free, total = torch.cuda.mem_get_info()
        need = memory_need_bytes(self.parameters, 2, self.settings.voxtral_memory_headroom_gb)
        problem = gpu_memory_problem(int(free), need, int(total), f"cuda:{torch.cuda.current_device()}")
        if problem:
            raise GPUMemoryError(problem)

    @staticmethod
    def _not_available(source: str, exc: BaseException) -> str:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false")
        where = "a local folder" if Path(source).expanduser().exists() else "the Hugging Face hub"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"the Voxtral model {source!r} could not be loaded from {where}"
                f"{' (HF_HUB_OFFLINE is set, so nothing is downloaded)' if offline else ''}: {first}. Set "
                "RAYSCRIBE_VOXTRAL_MODEL to a folder holding config.json, the safetensors weights, tekken.json and "
                f"preprocessor_config.json (e.g. from `huggingface-cli download {source}` on a machine with access)")

    # -- answering ------------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_name, "device": self.device, "dtype": self.dtype_name,
                "parameters": self.parameters, "load_seconds": round(self.load_seconds, 3),
                "context_tokens": self.context_tokens}

    def gpu_memory_bytes(self) -> int:
        """GPU memory torch holds for this process now (0 on CPU)."""
        if self.device != "cuda":
            return 0
        import torch

        return int(torch.cuda.memory_allocated())

    def window(self, options: AnalyzeOptions) -> float:
        max_new = options.max_new_tokens or self.settings.voxtral_max_new_tokens
        return window_seconds(self.context_tokens, max_new, self.settings.voxtral_max_audio_seconds,
                              len((options.prompt or "").split()) * 2)

    def analyze(self, audio: np.ndarray, options: AnalyzeOptions | None = None) -> Analysis:
        """Answer ``options.task`` about ``audio`` (16 kHz mono float32)."""
        options = options or AnalyzeOptions()
        started = time.perf_counter()
        prompt = build_prompt(options, self.settings)
        max_new = options.max_new_tokens or self.settings.voxtral_max_new_tokens
        if max_new < 1:
            raise AnalysisRequestError("max_new_tokens must be at least 1")
        temperature = self.settings.voxtral_temperature if options.temperature is None else options.temperature
        if audio.ndim != 1 or audio.size == 0:
            raise AnalysisRequestError("the audio must be a non-empty mono array")
        seconds = audio.shape[0] / SAMPLE_RATE
        pieces = plan_pieces(seconds, options.task, self.window(options))
        texts: list[str] = []
        input_tokens = output_tokens = 0
        truncated = False
        prepare = generate = 0.0
        for start, end in pieces:
            piece = np.ascontiguousarray(audio[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)], dtype=np.float32)
            t0 = time.perf_counter()
            inputs = self._inputs(piece, options.task, prompt, options.language or self.settings.voxtral_language)
            n_in = int(inputs["input_ids"].shape[1])
            if n_in + max_new > self.context_tokens:
                raise AnalysisRequestError(
                    f"the prompt and audio take {n_in} tokens and the answer up to {max_new}, over the model's "
                    f"context of {self.context_tokens}; shorten the audio or the prompt, or lower max_new_tokens")
            t1 = time.perf_counter()
            text, n_out, cut = self._generate(inputs, max_new, temperature)
            t2 = time.perf_counter()
            prepare += t1 - t0
            generate += t2 - t1
            texts.append(text.strip())
            input_tokens += n_in
            output_tokens += n_out
            truncated |= cut
        return Analysis(
            task=options.task, text=" ".join(t for t in texts if t), model=self.model_name, prompt=prompt,
            audio_seconds=round(seconds, 3), pieces=len(pieces), input_tokens=input_tokens,
            output_tokens=output_tokens, truncated=truncated, device=self.device, dtype=self.dtype_name,
            timings={"prepare_seconds": round(prepare, 4), "generate_seconds": round(generate, 4),
                     "total_seconds": round(time.perf_counter() - started, 4)},
        )

    def _inputs(self, audio: np.ndarray, task: str, prompt: str | None, language: str | None) -> Any:
        if task == "transcribe":
            return self.processor.apply_transcription_request(
                language=[language],  # None: the model decides
                audio=[audio], model_id=self.settings.voxtral_model, sampling_rate=SAMPLE_RATE,
                format=["wav"])
        from mistral_common.audio import Audio

        encoded = Audio(audio_array=audio, sampling_rate=SAMPLE_RATE, format="wav").to_base64("wav")
        conversation: Any = [{"role": "user", "content": [{"type": "audio", "base64": encoded},
                                                     {"type": "text", "text": prompt or ""}]}]
        return self.processor.apply_chat_template(conversation)

    def _generate(self, inputs: Any, max_new_tokens: int, temperature: float) -> tuple[str, int, bool]:
        import torch

        inputs = inputs.to(self.device, dtype=self.dtype)  # casts the float features only
        sampling: dict[str, Any] = ({"do_sample": True, "temperature": temperature} if temperature > 0
                                    else {"do_sample": False})
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=self.eos_token_id,
                                      **sampling)
        new = out[0, inputs["input_ids"].shape[1]:]
        text = self.processor.tokenizer.decode(new.tolist(), skip_special_tokens=True)
        n = int(new.shape[0])
        truncated = n >= max_new_tokens and int(new[-1]) != self.eos_token_id
        return str(text), n, truncated
