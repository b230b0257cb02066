"""Request and response models of the HTTP API, fields in the order OpenAI's API reference shows them.

Kept apart from the routes and from the serving logic so the wire format is one readable file: a change here
is a change to what clients see.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rayscribe.config.checks import check_language_code

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["segment", "word"]
Task = Literal["transcribe", "translate"]
_SEGMENT_ONLY: list[Granularity] = ["segment"]


# ------------------------------------------------------------------------------------------ requests


class TranscriptionRequest(BaseModel):
    """The form fields of ``POST /v1/audio/transcriptions`` other than ``file`` (which is streamed apart)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    language: str | None = None
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Granularity] = Field(default_factory=lambda: _SEGMENT_ONLY.copy())
    stream: bool = False
    # Which route the request came in by: ``/v1/audio/translations`` sets "translate" (English text out).
    task: Task = "transcribe"

    @field_validator("language", "prompt", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return check_language_code(value)

    @field_validator("timestamp_granularities")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value)) or ["segment"]


# ----------------------------------------------------------------------------------------- responses


class Usage(BaseModel):
    """Billing-style usage for duration-priced models: the input's length in whole seconds, rounded up, as
    OpenAI bills and reports it (9.655 s of audio → 10)."""

    type: Literal["duration"] = "duration"
    seconds: int

    @classmethod
    def of(cls, duration: float) -> Usage:
        """The usage of ``duration`` seconds of audio (rounded to milliseconds first, so 11.0000001 is 11)."""
        return cls(seconds=math.ceil(round(max(duration, 0.0), 3)))


class Transcription(BaseModel):
    """``response_format=json``: the text, usage as OpenAI adds it, and (beyond OpenAI's fields) the detected
    language, named as ``verbose_json`` names it, with the detector's probability."""

    text: str
    usage: Usage | None = None
    language: str | None = None
    language_probability: float | None = None


class Translation(BaseModel):
    """``response_format=json`` of ``/v1/audio/translations``: the English text only, as OpenAI answers."""

    text: str


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionVerbose(BaseModel):
    """``response_format=verbose_json``: words and segments as ``timestamp_granularities[]`` asks."""

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    words: list[TranscriptionWord] | None = None
    segments: list[TranscriptionSegment] | None = None
    usage: Usage | None = None
    language_probability: float | None = None  # beyond OpenAI's fields: the detector's confidence


class TranslationVerbose(BaseModel):
    """``response_format=verbose_json`` of ``/v1/audio/translations``: OpenAI's ``language`` is that of the
    output, always ``english``; the language detected in the audio is added as ``source_language``."""

    task: Literal["translate"] = "translate"
    language: Literal["english"] = "english"
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    source_language: str | None = None
    source_language_probability: float | None = None


class TextDeltaEvent(BaseModel):
    """A streamed piece of text: one decoded segment (with its times, beyond OpenAI's fields)."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str
    start: float
    end: float


class StreamLanguage(BaseModel):
    """A detected language as OpenAI's stream events list it (``TranscriptionLanguage``: an ISO 639-1 code)."""

    code: str


class TextDoneEvent(BaseModel):
    """The stream's last event. No ``usage``: OpenAI's ``transcript.text.done`` carries token usage only
    (``type: "tokens"``), and a duration there fails the official SDK's strict response validation."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    languages: list[StreamLanguage] | None = None


class ModelCard(BaseModel):
    """OpenAI's model object, plus what this deployment can do with it (beyond OpenAI's fields): the model it
    runs (``root``), the languages it transcribes (ISO 639-1 codes) and its tasks."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rayscribe"
    root: str | None = None
    languages: list[str] = Field(default_factory=list)
    tasks: list[Task] = Field(default_factory=list)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Replicas(BaseModel):
    """Running replicas per deployment (``serve status``'s count of RUNNING replicas)."""

    ingress: int
    whisper: int


class WorkerCounts(BaseModel):
    """Whisper replicas (or queue workers) wanted and running."""

    wanted: int
    up: int


class Health(BaseModel):
    """The predecessor's health fields, then what this service adds (the contract of ``rayscribe/health.py``,
    which the queue worker answers too): HTTP 200 for ``healthy`` and ``degraded``, 503 for ``unhealthy``."""

    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    uptime: float
    gpu_available: bool
    worker_running: bool
    container_id: str
    mode: str = "serve"
    reasons: list[str] = []
    workers: WorkerCounts
    voxtral: Literal["off", "ready", "starting", "failed"] = "off"
    models: list[str]
    engine: dict[str, Any]
    replicas: Replicas
    jobs_done: int = 0
    jobs_failed: int = 0
    last_job_finished: str | None = None


# --------------------------------------------------------------------------------------------- errors


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope; every non-2xx answer of the API has this shape."""

    error: ErrorBody
