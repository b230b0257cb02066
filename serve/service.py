"""The serving logic behind the routes: check the model, decode the upload, call the model deployment, shape
the answer, count it.

Uploads are decoded here, in the ingress, so a bad upload fails fast with a 400 and never occupies a model
replica, and only 16 kHz mono int16 PCM travels to the model. Decoding runs in a thread so the ingress's event loop
keeps accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from rayscribe.audio import SAMPLE_RATE, decode_pcm16
from rayscribe.config.checks import LANGUAGE_NAMES
from rayscribe.config.serve import ServeSettings
from rayscribe.config.settings import Settings
from rayscribe.engines.model_paths import model_label
from rayscribe.errors import AudioDecodeError, LanguageNotSupportedError
from rayscribe.formatters import format_transcript, language_name, verbose_json_dict
from rayscribe.health import Observation, VoxtralState, iso_time, report
from rayscribe.transcript import Transcript
from serve.auth import too_large_error
from serve.errors import SERVER_ERROR, APIError
from serve.schemas import (
    Health,
    ModelCard,
    ModelList,
    StreamLanguage,
    TextDeltaEvent,
    TextDoneEvent,
    Transcription,
    TranscriptionRequest,
    TranscriptionVerbose,
    Translation,
    TranslationVerbose,
    Usage,
)
from serve.whisper_deployment import RequestOptions, StreamedSegment, TimedTranscript

log = logging.getLogger("rayscribe.serve")

WHISPER_DEPLOYMENT = "WhisperDeployment"
INGRESS_DEPLOYMENT = "TranscriptionAPI"


def served_model_names(settings: Settings, serve_settings: ServeSettings) -> list[str]:
    """The names a client may pass as ``model``: the configured aliases, then the engine's own model name."""
    return list(dict.fromkeys([*serve_settings.served_models, model_label(settings.model)]))


def is_english_only(model: str) -> bool:
    """Whether ``model`` names an English-only Whisper (``tiny.en``, ``base.en``, a folder ``…/small.en``):
    it can neither transcribe other languages nor translate."""
    return model_label(model).lower().endswith(".en")


# Cantonese is in Whisper's list but has a token only in large-v3's vocabulary (and the models built on it).
V3_ONLY_LANGUAGES = frozenset({"yue"})


def model_languages(model: str) -> list[str]:
    """The ISO 639-1 codes ``model`` transcribes: ``["en"]`` for an English-only model, else Whisper's list
    (without Cantonese before large-v3)."""
    if is_english_only(model):
        return ["en"]
    label = model_label(model).lower()
    v3 = "v3" in label or "turbo" in label
    return [code for code in LANGUAGE_NAMES if v3 or code not in V3_ONLY_LANGUAGES]


class Metrics:
    """Ray metrics (Prometheus, on the dashboard) for the HTTP API; created inside the replica."""

    def __init__(self) -> None:
        from ray.serve.metrics import Counter, Histogram

        self.requests = Counter("rayscribe_http_requests", description="HTTP requests answered",
                                tag_keys=("route", "status"))  # type: ignore[arg-type]
        self.errors = Counter("rayscribe_http_errors", description="HTTP requests answered with an error",
                              tag_keys=("route", "status"))  # type: ignore[arg-type]
        self.latency = Histogram("rayscribe_http_latency_ms", description="time to answer, milliseconds",
                                 boundaries=[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000],
                                 tag_keys=("route",))
        self.audio_seconds = Counter("rayscribe_http_audio_seconds", description="seconds of audio transcribed",
                                     tag_keys=("model",))

    def record(self, route: str, status: int, seconds: float) -> None:
        tags = {"route": route, "status": str(status)}
        self.requests.inc(1, tags=tags)
        if status >= 400:
            self.errors.inc(1, tags=tags)
        self.latency.observe(seconds * 1000, tags={"route": route})


class TranscriptionService:
    """What the routes call; holds the model handle, the settings and the metrics."""

    def __init__(self, settings: Settings, serve_settings: ServeSettings, model: Any,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.serve_settings = serve_settings
        self.model = model  # a DeploymentHandle to WhisperDeployment
        self.metrics = metrics
        self.models = served_model_names(settings, serve_settings)
        self.started = time.time()
        self.container_id = socket.gethostname()
        self._engine_info: dict[str, Any] = {}
        self.voxtral: Any = None  # a VoxtralDeployment handle when audio understanding is on (serve/app.py)
        self.requests_done = 0  # audio requests answered 2xx / 5xx, and when the last one ended (health)
        self.requests_failed = 0
        self.last_request_finished: float | None = None

    # -- models ---------------------------------------------------------------------------------------

    def _card(self, name: str) -> ModelCard:
        """Every served name answers with the one loaded model, so every card describes it."""
        english_only = is_english_only(self.settings.model)
        return ModelCard(id=name, created=int(self.started), root=model_label(self.settings.model),
                         languages=model_languages(self.settings.model),
                         tasks=["transcribe"] if english_only else ["transcribe", "translate"])

    def list_models(self) -> ModelList:
        return ModelList(data=[self._card(name) for name in self.models])

    def get_model(self, name: str) -> ModelCard:
        self.check_model(name)
        return self._card(name)

    def check_model(self, name: str) -> None:
        if name not in self.models:
            raise APIError(404, f"The model '{name}' does not exist or you do not have access to it.",
                           param="model", code="model_not_found")

    def check_task(self, request: TranscriptionRequest) -> None:
        """A 400 before any decoding when the loaded model cannot do what the request asks (translation
        needs a multilingual model)."""
        if request.task == "translate" and is_english_only(self.settings.model):
            raise APIError(400, f"The model '{request.model}' runs {model_label(self.settings.model)}, which is "
                           "English-only and cannot translate. Use /v1/audio/transcriptions, or serve a "
                           "multilingual model (RAYSCRIBE_MODEL=base, or a name without '.en').",
                           param="model", code="model_not_multilingual")

    # -- audio ----------------------------------------------------------------------------------------

    async def decode(self, data: bytes, filename: str | None) -> np.ndarray:
        """The upload as 16 kHz mono int16 PCM, or a 400/413 in OpenAI's shape. The model deployments take it
        as is: half the bytes of float32 to send, which took Serve's call from 5.3-6.8 ms to 2.6 ms for an
        11 s clip on a 2-core machine."""
        if len(data) > self.serve_settings.max_upload_bytes:
            raise too_large_error(self.serve_settings.max_upload_bytes)
        if not data:
            raise APIError(400, "The audio file is empty.", param="file", code="empty_file")
        try:
            return await asyncio.to_thread(decode_pcm16, data, filename or "upload")
        except AudioDecodeError as exc:
            raise APIError(400, f"Invalid file format: {exc.cause}. Upload audio such as flac, m4a, mp3, "
                           "mp4, ogg, wav or webm.", param="file", code="invalid_file_format") from None

    # -- transcription --------------------------------------------------------------------------------

    @staticmethod
    def _request_options(request: TranscriptionRequest) -> RequestOptions:
        return RequestOptions(language=request.language, prompt=request.prompt, temperature=request.temperature,
                              task=request.task)

    @staticmethod
    def _unsupported_language(exc: LanguageNotSupportedError) -> APIError:
        """The model deployment's refusal of a language its model lacks, as a 400 naming it (Ray wraps the
        error: its ``cause`` holds the message)."""
        return APIError(400, str(getattr(exc, "cause", None) or exc), param="language", code="unsupported_language")

    def _overloaded(self) -> APIError:
        retry = self.serve_settings.retry_after_s
        return APIError(503, "The server is overloaded; please retry after a short wait.", type=SERVER_ERROR,
                        code="overloaded", headers={"Retry-After": str(retry)})

    async def _call(self, audio: np.ndarray, request: TranscriptionRequest) -> TimedTranscript:
        from ray.serve.exceptions import BackPressureError

        try:
            return await self.model.transcribe.remote(audio, self._request_options(request))
        except BackPressureError:
            raise self._overloaded() from None
        except LanguageNotSupportedError as exc:
            raise self._unsupported_language(exc) from None

    def _count_audio(self, audio: np.ndarray, model: str) -> None:
        if self.metrics is not None:
            self.metrics.audio_seconds.inc(audio.shape[0] / SAMPLE_RATE, tags={"model": model})

    async def transcribe(self, request: TranscriptionRequest, audio: np.ndarray, read_decode_s: float) -> Response:
        """The rendered transcript, with a ``Server-Timing`` header: reading and decoding the upload, the whole
        call to the model deployment, and within it the wait in the replica's batch queue and the engine's time
        for the batch (https://www.w3.org/TR/server-timing/)."""
        called = time.perf_counter()
        timed = await self._call(audio, request)
        model_s = time.perf_counter() - called
        self._count_audio(audio, request.model)
        response = render(timed.transcript, request)
        response.headers["Server-Timing"] = server_timing({
            "read-decode": read_decode_s, "model": model_s, "queue": timed.queue_s, "engine": timed.engine_s})
        return response

    async def stream(self, request: TranscriptionRequest, audio: np.ndarray) -> StreamingResponse:
        """Server-sent events: a ``transcript.text.delta`` per segment as it is decoded, then
        ``transcript.text.done``. The first segment is awaited before answering, so overload and engine
        errors still come back as a status code rather than in the middle of a 200 stream."""
        from ray.serve.exceptions import BackPressureError

        segments = self.model.options(stream=True).stream.remote(audio, self._request_options(request))
        try:
            first = await segments.__anext__()
        except StopAsyncIteration:
            first = None
        except BackPressureError:
            raise self._overloaded() from None
        except LanguageNotSupportedError as exc:
            raise self._unsupported_language(exc) from None
        self._count_audio(audio, request.model)

        async def events() -> AsyncIterator[str]:
            texts: list[str] = []
            languages: list[str] = []  # in the order the spans were decoded in, each once
            piece: StreamedSegment | None = first
            while piece is not None:
                segment = piece.segment
                if piece.language not in languages:
                    languages.append(piece.language)
                text = segment.text.strip()
                if text:
                    delta = text if not texts else f" {text}"
                    texts.append(text)
                    event = TextDeltaEvent(delta=delta, start=segment.start, end=segment.end)
                    yield f"data: {event.model_dump_json()}\n\n"
                try:
                    piece = await segments.__anext__()
                except StopAsyncIteration:
                    piece = None
                except Exception as exc:  # the status is sent already: end the stream with an error event
                    log.error("stream failed: %s", exc)
                    body = {"error": {"message": "transcription failed while streaming", "type": SERVER_ERROR,
                                      "param": None, "code": "stream_error"}}
                    yield f"event: error\ndata: {json.dumps(body)}\n\n"
                    return
            done = TextDoneEvent(text=" ".join(texts),
                                 languages=[StreamLanguage(code=code) for code in languages] or None)
            yield f"data: {done.model_dump_json(exclude_none=True)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- health ---------------------------------------------------------------------------------------

    async def health(self) -> Health:
        """The health contract of :mod:`rayscribe.health`: healthy with every Whisper replica running, degraded
        with some (or Voxtral enabled and not running, or a deployment Serve calls unhealthy), unhealthy with none."""
        states = await asyncio.to_thread(_deployment_states)
        whisper = states.get(WHISPER_DEPLOYMENT, {})
        running = int(whisper.get("running", 0))
        if running and not self._engine_info:
            try:
                self._engine_info = await asyncio.wait_for(self.model.info.remote(), timeout=5)
            except Exception as exc:  # health must answer even when the model is busy or down
                log.warning("engine info unavailable: %s", exc)
        problems = [f"{name} is {state['status']}: {state['message']}".rstrip(": ")
                    for name, state in states.items() if state.get("status") == "UNHEALTHY"]
        # wanted: what Serve has (0 when scaled to zero with RAYSCRIBE_MIN_REPLICAS=0); unknown counts as one
        seen = Observation(running=True, workers_wanted=int(whisper["wanted"]) if whisper else 1, workers_up=running,
                           voxtral=self._voxtral_state(states), problems=problems)
        body = report(
            seen, mode="serve", started=self.started, gpu_available=self._engine_info.get("device") == "cuda"
            or _cluster_gpus() > 0, worker_running=running > 0,
            models=self.models,
            engine={k: v for k, v in self._engine_info.items() if k in ("backend", "model", "device", "compute_type")},
            replicas={"ingress": int(states.get(INGRESS_DEPLOYMENT, {}).get("running", 0)), "whisper": running},
            jobs_done=self.requests_done, jobs_failed=self.requests_failed,
            last_job_finished=iso_time(self.last_request_finished),
        )
        return Health(**body)

    def _voxtral_state(self, states: dict[str, dict[str, Any]]) -> VoxtralState:
        if self.voxtral is None:
            return "off"
        from serve.voxtral_deployment import VOXTRAL_DEPLOYMENT

        state = states.get(VOXTRAL_DEPLOYMENT, {})
        if state.get("running", 0) > 0:
            return "ready"
        return "starting" if state.get("status") in ("UPDATING", "UPSCALING") else "failed"

    def record_request(self, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered (the request-metrics middleware calls it): audio routes count as jobs done
        (2xx) or failed (5xx: a client's 4xx is not the service failing) for the health report."""
        if route.startswith("/v1/audio"):
            if status < 300:
                self.requests_done += 1
            elif status >= 500:
                self.requests_failed += 1
            if status < 300 or status >= 500:
                self.last_request_finished = time.time()
        if self.metrics is not None:
            self.metrics.record(route, status, seconds)


def _cluster_gpus() -> float:
    import ray

    try:
        return float(ray.cluster_resources().get("GPU", 0.0))
    except Exception:
        return 0.0


def _deployment_states() -> dict[str, dict[str, Any]]:
    """Per deployment of this app, from Serve's controller (what ``serve status`` shows): replicas running,
    replicas wanted (every replica not stopping: running, starting, recovering), Serve's status and message."""
    from ray import serve
    from ray.serve.schema import ReplicaState

    try:
        app_name = serve.get_replica_context().app_name
        status = serve.status().applications[app_name]
    except Exception as exc:
        log.warning("serve status unavailable: %s", exc)
        return {}
    return {name: {"running": int(d.replica_states.get(ReplicaState.RUNNING, 0)),
                   "wanted": sum(int(n) for state, n in d.replica_states.items() if state != ReplicaState.STOPPING),
                   "status": str(getattr(d.status, "value", d.status)), "message": d.message or ""}
            for name, d in status.deployments.items()}


def server_timing(durations: dict[str, float]) -> str:
    """A ``Server-Timing`` header value from durations in seconds (the header counts milliseconds)."""
    return ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in durations.items())


def render(transcript: Transcript, request: TranscriptionRequest) -> Response:
    """The transcript in the response format the request asked for: OpenAI's transcription objects, or its
    translation objects for ``task == "translate"`` (same text formats)."""
    usage = Usage.of(transcript.duration)
    fmt = request.response_format
    if fmt == "json":
        if request.task == "translate":
            return JSONResponse(Translation(text=transcript.text).model_dump())
        return JSONResponse(Transcription(
            text=transcript.text, usage=usage, language=language_name(transcript.language),
            language_probability=round(transcript.language_probability, 4)).model_dump())
    if fmt == "text":
        return PlainTextResponse(transcript.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(format_transcript(transcript, "srt"))
    if fmt == "vtt":
        return PlainTextResponse(format_transcript(transcript, "vtt"), media_type="text/vtt")
    data = verbose_json_dict(transcript)
    probability = round(transcript.language_probability, 4)
    if request.task == "translate":
        translation = TranslationVerbose(duration=data["duration"], text=data["text"], segments=data["segments"],
                                         source_language=data["language"], source_language_probability=probability)
        return JSONResponse(translation.model_dump(exclude_none=True))
    verbose = TranscriptionVerbose(
        language=data["language"], duration=data["duration"], text=data["text"],
        words=data["words"] if "word" in request.timestamp_granularities else None,
        segments=data["segments"] if "segment" in request.timestamp_granularities else None,
        usage=usage, language_probability=probability,
    )
    return JSONResponse(verbose.model_dump(exclude_none=True))
