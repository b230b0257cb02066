"""Request and response models of the HTTP API, fields in the order OpenAI's API reference shows them.

Kept apart from the routes and from the serving logic so the wire format is one readable file: a change here
is a change to what clients see.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rayscribe.config.checks import check_language_code

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["segment", "word"]
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
    """Billing-style usage for duration-priced models: the input's length."""

    type: Literal["duration"] = "duration"
    seconds: float


class Transcription(BaseModel):
    """``response_format=json``: the text only (plus usage, as OpenAI adds it)."""

    text: str
    usage: Usage | None = None


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


class TextDeltaEvent(BaseModel):
    """A streamed piece of text: one decoded segment (with its times, beyond OpenAI's fields)."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str
    start: float
    end: float


class TextDoneEvent(BaseModel):
    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rayscribe"


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
