"""Audio understanding over HTTP: ``POST /v1/audio/analyze`` (Voxtral alone) and
``POST /v1/audio/transcriptions/hybrid`` (Whisper and Voxtral on the same upload at once, the transcript streamed
first and the analysis second, as server-sent events). See docs/http.md.

Same front door as the transcription route: the API key and upload limit are checked by the guard middleware
before the body is read, the upload is decoded once in the ingress (400 when it is not audio), and every error
has OpenAI's shape. When Voxtral is off, both routes answer 404 (``voxtral_disabled``: the route is not offered);
when its model could not load, 503 with the reason and the fix. The transcription routes are untouched either way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from rayscribe.audio import SAMPLE_RATE
from rayscribe.engines.voxtral_engine import TASKS, AnalyzeOptions
from serve.errors import SERVER_ERROR, APIError
from serve.schemas import ErrorResponse, TranscriptionRequest, Usage
from serve.service import TranscriptionService

router = APIRouter()
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 413, 500, 503)}


class AnalysisUsage(BaseModel):
    seconds: float
    input_tokens: int
    output_tokens: int


class AnalysisTimings(BaseModel):
    decode_seconds: float
    prepare_seconds: float
    generate_seconds: float
    model_seconds: float
    total_seconds: float


class AudioAnalysis(BaseModel):
    """The answer of ``/v1/audio/analyze`` (and the hybrid stream's ``analysis.done`` event)."""

    object: Literal["audio.analysis"] = "audio.analysis"
    model: str
    task: str
    prompt: str | None
    text: str
    truncated: bool
    pieces: int
    usage: AnalysisUsage
    timings: AnalysisTimings


def get_service(request: Request) -> TranscriptionService:
    service: TranscriptionService = request.app.state.service
    return service


def _voxtral(service: TranscriptionService) -> Any:
    handle = getattr(service, "voxtral", None)
    if handle is None:
        # 404, not 503: the route is not offered by this deployment (nothing to wait for or retry)
        raise APIError(404, "Audio understanding is off on this server: set RAYSCRIBE_VOXTRAL_ENABLED=true (and "
                       "RAYSCRIBE_VOXTRAL_MODEL) and redeploy.", code="voxtral_disabled")
    return handle


def _options(task: str, prompt: str | None, max_new_tokens: int | None, temperature: float | None) -> AnalyzeOptions:
    if task not in TASKS:
        raise APIError(400, f"invalid value for 'task': {task!r}; use one of {', '.join(TASKS)}", param="task",
                       code="invalid_value")
    if max_new_tokens is not None and not 1 <= max_new_tokens <= 32768:
        raise APIError(400, "invalid value for 'max_new_tokens': use 1 to 32768", param="max_new_tokens",
                       code="invalid_value")
    if temperature is not None and not 0 <= temperature <= 2:
        raise APIError(400, "invalid value for 'temperature': use 0 to 2", param="temperature", code="invalid_value")
    if task == "question" and not (prompt or "").strip():
        raise APIError(400, "the question task needs a 'prompt': the question to ask about the audio",
                       param="prompt", code="missing_required_parameter")
    return AnalyzeOptions(task=task, prompt=prompt, max_new_tokens=max_new_tokens,  # type: ignore[arg-type]
                          temperature=temperature)


def _unwrap(result: dict[str, Any]) -> dict[str, Any]:
    """The analysis, or the APIError its status calls for."""
    status = result.get("status")
    if status == "done":
        return dict(result["analysis"])
    if status == "unavailable":
        raise APIError(503, f"Audio understanding is unavailable: {result.get('error')}", type=SERVER_ERROR,
                       code="model_unavailable")
    if result.get("error_type") in ("AnalysisRequestError", "AudioDecodeError"):
        raise APIError(400, str(result.get("error")), param="file", code="invalid_analysis_request")
    raise APIError(500, f"the analysis failed: {result.get('error')}", type=SERVER_ERROR, code="analysis_failed")


async def _call(service: TranscriptionService, handle: Any, audio: np.ndarray, options: AnalyzeOptions) -> dict:
    from ray.serve.exceptions import BackPressureError

    try:
        return dict(await handle.analyze.remote(audio, options))
    except BackPressureError:
        raise APIError(503, "The server is overloaded; please retry after a short wait.", type=SERVER_ERROR,
                       code="overloaded", headers={"Retry-After": str(service.serve_settings.retry_after_s)}) from None


def _shape(analysis: dict[str, Any], decode_seconds: float, started: float) -> AudioAnalysis:
    timings = analysis.get("timings", {})
    return AudioAnalysis(
        model=analysis["model"], task=analysis["task"], prompt=analysis.get("prompt"), text=analysis["text"],
        truncated=analysis["truncated"], pieces=analysis["pieces"],
        usage=AnalysisUsage(seconds=analysis["audio_seconds"], input_tokens=analysis["input_tokens"],
                            output_tokens=analysis["output_tokens"]),
        timings=AnalysisTimings(decode_seconds=round(decode_seconds, 4),
                                prepare_seconds=timings.get("prepare_seconds", 0.0),
                                generate_seconds=timings.get("generate_seconds", 0.0),
                                model_seconds=timings.get("total_seconds", 0.0),
                                total_seconds=round(time.perf_counter() - started, 4)),
    )


@router.post("/v1/audio/analyze", response_model=AudioAnalysis, responses=_ERRORS)
async def analyze_audio(
    file: UploadFile = File(..., description="The audio file (flac, m4a, mp3, mp4, ogg, wav, webm...)."),
    task: str = Form("summary", description="summary, question (needs prompt) or transcribe."),
    prompt: str | None = Form(None, description="The question (task=question) or a custom summary instruction."),
    max_new_tokens: int | None = Form(None, description="Most tokens in the answer (default from settings)."),
    temperature: float | None = Form(None, description="Sampling temperature 0-2 (0: greedy)."),
    service: TranscriptionService = Depends(get_service),
) -> AudioAnalysis:
    """Answer a question about the audio, summarise it, or transcribe it with Voxtral."""
    started = time.perf_counter()
    handle = _voxtral(service)
    options = _options(task, prompt, max_new_tokens, temperature)
    audio = await service.decode(await file.read(), file.filename)
    decoded = time.perf_counter() - started
    analysis = _unwrap(await _call(service, handle, audio, options))
    return _shape(analysis, decoded, started)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/v1/audio/transcriptions/hybrid", responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}})
async def hybrid(
    file: UploadFile = File(..., description="The audio file."),
    model: str = Form("whisper-1", description="The Whisper model name (GET /v1/models)."),
    language: str | None = Form(None, description="ISO 639-1 code of the input's language (Whisper)."),
    task: str = Form("summary", description="The analysis: summary, question (needs prompt) or transcribe."),
    prompt: str | None = Form(None, description="The question, or a custom summary instruction."),
    max_new_tokens: int | None = Form(None, description="Most tokens in the analysis."),
    service: TranscriptionService = Depends(get_service),
) -> StreamingResponse:
    """Whisper and Voxtral start on the upload at once; server-sent events: ``transcript`` as soon as Whisper is
    done, then ``analysis`` (or ``analysis.failed``, which leaves the transcript valid), then ``[DONE]``."""
    started = time.perf_counter()
    handle = _voxtral(service)
    service.check_model(model)
    options = _options(task, prompt, max_new_tokens, None)
    try:
        request = TranscriptionRequest.model_validate({"model": model, "language": language})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    audio = await service.decode(await file.read(), file.filename)
    decoded = time.perf_counter() - started
    analysis_task = asyncio.create_task(_call(service, handle, audio, options))
    try:
        transcript = (await service._call(audio, request)).transcript  # errors here are still a status code
    except BaseException:
        analysis_task.cancel()
        raise
    transcript_at = time.perf_counter() - started
    duration = audio.shape[0] / SAMPLE_RATE

    async def events() -> AsyncIterator[str]:
        yield _event("transcript", {"type": "transcript.done", "text": transcript.text,
                                    "language": transcript.language,
                                    "usage": Usage.of(duration).model_dump(),
                                    "seconds": round(transcript_at, 4)})
        try:
            analysis = _unwrap(await analysis_task)
            shaped = _shape(analysis, decoded, started).model_dump()
            yield _event("analysis", {"type": "analysis.done", **shaped})
        except APIError as err:
            yield _event("analysis", {"type": "analysis.failed", "status": err.status,
                                      "error": err.body.model_dump()})
        except Exception as exc:  # the status is sent already: report in the stream
            yield _event("analysis", {"type": "analysis.failed", "status": 500, "error": {
                "message": f"the analysis failed: {type(exc).__name__}", "type": SERVER_ERROR, "param": None,
                "code": "analysis_failed"}})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
