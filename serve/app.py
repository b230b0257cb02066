"""The HTTP routes (an OpenAI-compatible subset) and the Ray Serve application that composes them.

Two deployments: ``TranscriptionAPI`` (the FastAPI ingress: auth, upload limit, decoding, formatting; cheap,
one replica) and ``WhisperDeployment`` (the model: autoscaled from load, fractional GPUs, dynamic batching).
Splitting them lets the model scale on its own and keeps bad uploads away from it.

- :func:`build_app` binds both from settings (``rayscribe serve`` and the tests use it);
- :func:`app_builder` is the ``import_path`` target of ``serve/config.yaml`` for ``serve deploy``;
- :func:`serve_config` writes that config from settings.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from ray import serve
from ray.serve.config import BackpressureConfig

from rayscribe.config.serve import ServeSettings, load_serve_settings
from rayscribe.config.settings import Settings, load_settings
from rayscribe.config.voxtral import VoxtralSettings, load_voxtral_settings
from rayscribe.health import http_code
from serve.analyze_routes import router as analyze_router
from serve.auth import APIKeyChecker, GuardMiddleware
from serve.errors import APIError, install_error_handlers
from serve.request_metrics import RequestMetricsMiddleware
from serve.schemas import (
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    Transcription,
    TranscriptionRequest,
    TranscriptionVerbose,
    Translation,
    TranslationVerbose,
)
from serve.service import INGRESS_DEPLOYMENT, Metrics, TranscriptionService
from serve.web_ui import install_web_ui
from serve.whisper_deployment import WhisperDeployment

APP_NAME = "rayscribe"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 500, 503)
}

router = APIRouter()


def get_service(request: Request) -> TranscriptionService:
    service: TranscriptionService = request.app.state.service
    return service


@router.post(
    "/v1/audio/transcriptions",
    response_model=Transcription | TranscriptionVerbose,
    responses={**_ERRORS, 200: {"content": {"text/plain": {}, "text/vtt": {}, "text/event-stream": {}}}},
)
async def create_transcription(
    file: UploadFile = File(..., description="The audio file (flac, m4a, mp3, mp4, ogg, wav, webm...)."),
    model: str = Form(..., description="A name from GET /v1/models (e.g. whisper-1)."),
    language: str | None = Form(None, description="ISO 639-1 code of the input's language."),
    prompt: str | None = Form(None, description="Text to guide the style or continue a previous segment."),
    response_format: str = Form("json", description="json, text, srt, verbose_json or vtt."),
    temperature: float = Form(0.0, description="Sampling temperature, 0 to 1."),
    timestamp_granularities: list[str] | None = Form(
        None, alias="timestamp_granularities[]", description="word and/or segment (verbose_json)."),
    stream: bool = Form(False, description="Server-sent events of the text as segments are decoded."),
    service: TranscriptionService = Depends(get_service),
) -> Response:
    """Transcribe audio into the input language (OpenAI's ``createTranscription``)."""
    request = _validate({
        "model": model, "language": language, "prompt": prompt, "response_format": response_format,
        "temperature": temperature, "timestamp_granularities": timestamp_granularities or ["segment"],
        "stream": stream,
    })
    if timestamp_granularities and request.response_format != "verbose_json":
        # OpenAI refuses rather than silently dropping the words; its message, word for word
        raise APIError(400, "`response_format` must be `verbose_json` if `timestamp_granularities[]` is provided",
                       param="timestamp_granularities[]", code="invalid_value")
    return await _answer(request, file, service)


@router.post(
    "/v1/audio/translations",
    response_model=Translation | TranslationVerbose,
    responses={**_ERRORS, 200: {"content": {"text/plain": {}, "text/vtt": {}, "text/event-stream": {}}}},
)
async def create_translation(
    file: UploadFile = File(..., description="The audio file (flac, m4a, mp3, mp4, ogg, wav, webm...)."),
    model: str = Form(..., description="A name from GET /v1/models whose tasks include translate."),
    prompt: str | None = Form(None, description="English text to guide the style or continue a previous segment."),
    response_format: str = Form("json", description="json, text, srt, verbose_json or vtt."),
    temperature: float = Form(0.0, description="Sampling temperature, 0 to 1."),
    stream: bool = Form(False, description="Server-sent events as for transcriptions (beyond OpenAI's API)."),
    service: TranscriptionService = Depends(get_service),
) -> Response:
    """Translate audio into English (OpenAI's ``createTranslation``); the input's language is detected."""
    request = _validate({"model": model, "prompt": prompt, "response_format": response_format,
                         "temperature": temperature, "stream": stream, "task": "translate"})
    return await _answer(request, file, service)


def _validate(fields: dict[str, Any]) -> TranscriptionRequest:
    """The form fields as a request, or a 400 naming the first bad one."""
    try:
        return TranscriptionRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


async def _answer(request: TranscriptionRequest, file: UploadFile, service: TranscriptionService) -> Response:
    """What both audio routes do once their fields are valid: check the model can do it (before reading the
    upload), decode, then stream or answer whole."""
    service.check_model(request.model)
    service.check_task(request)
    started = time.perf_counter()
    audio = await service.decode(await file.read(), file.filename)
    decoded = time.perf_counter()
    if request.stream:
        return await service.stream(request, audio)
    return await service.transcribe(request, audio, read_decode_s=decoded - started)


@router.get("/v1/models", response_model=ModelList, responses=_ERRORS)
async def list_models(service: TranscriptionService = Depends(get_service)) -> ModelList:
    """The model names this service answers to, each with the languages and tasks of the model it runs."""
    return service.list_models()


@router.get("/v1/models/{model}", response_model=ModelCard, responses=_ERRORS)
async def retrieve_model(model: str, service: TranscriptionService = Depends(get_service)) -> ModelCard:
    return service.get_model(model)


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "unhealthy"}})
async def health(service: TranscriptionService = Depends(get_service)) -> JSONResponse:
    """Liveness and what runs: the predecessor's fields plus models and replica counts (no key needed); 503 when
    no Whisper replica runs."""
    body = await service.health()
    return JSONResponse(body.model_dump(), status_code=http_code(body.status))


def create_api(service: TranscriptionService) -> FastAPI:
    """The FastAPI app around ``service``: routes, OpenAI-shaped errors, the guard and per-request metrics."""
    api = FastAPI(title="rayscribe", version="0.1.0",
                  description="OpenAI-compatible speech-to-text on Ray Serve.")
    api.state.service = service
    api.include_router(router)
    api.include_router(analyze_router)
    install_web_ui(api, service.serve_settings.web_ui)  # GET / : the page (serve/web/)
    install_error_handlers(api)
    api.add_middleware(GuardMiddleware, checker=APIKeyChecker(service.serve_settings.key_list()),
                       limit_bytes=service.serve_settings.max_upload_bytes)

    # outermost: it also counts what the guard refuses (and the health report's jobs done / failed)
    api.add_middleware(RequestMetricsMiddleware, record=service.record_request)
    return api


@serve.deployment(name=INGRESS_DEPLOYMENT)
@serve.ingress()
class TranscriptionAPI:
    """The ingress replica: builds the FastAPI app around a :class:`TranscriptionService` at start."""

    def __init__(self, model: Any, settings: dict[str, Any], serve_settings: dict[str, Any],
                 voxtral: Any = None) -> None:
        from rayscribe.logs import configure_logging

        engine_settings = Settings(**settings)
        configure_logging(engine_settings.log_level)
        self.service = TranscriptionService(engine_settings, ServeSettings(**serve_settings), model, Metrics())
        self.service.voxtral = voxtral  # a VoxtralDeployment handle, or None when audio understanding is off

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.service)


def _model_gpus(settings: Settings, serve_settings: ServeSettings) -> float:
    """GPU fraction per model replica: the setting when the cluster has GPUs or its autoscaler may launch GPU
    nodes (the replicas' demand then brings them up; ``cuda`` with neither fails naming what is missing); 0
    otherwise (a replica asking for a GPU on a cluster that can never have one would never start)."""
    if settings.device == "cpu" or serve_settings.gpu_per_replica == 0:
        return 0.0
    from actors.cluster import gpu_wanted

    wanted = gpu_wanted(settings.device, settings.gpu_nodes, serve_settings.gpu_per_replica,
                        autoscaling_config=settings.autoscaling_config)
    return serve_settings.gpu_per_replica if wanted else 0.0


def _voxtral_deployment(settings: Settings, vsettings: VoxtralSettings) -> Any:
    """The bound Voxtral deployment (one replica), or ``None`` when ``RAYSCRIBE_VOXTRAL_ENABLED`` is off."""
    if not vsettings.voxtral_enabled:
        return None
    from serve.voxtral_deployment import VoxtralDeployment

    gpus = 0.0
    if settings.device != "cpu" and vsettings.voxtral_device != "cpu" and vsettings.voxtral_gpu_fraction > 0:
        from actors.cluster import gpu_wanted

        if gpu_wanted(vsettings.voxtral_device, settings.gpu_nodes, vsettings.voxtral_gpu_fraction,
                      autoscaling_config=settings.autoscaling_config, what="RAYSCRIBE_VOXTRAL_DEVICE=cuda"):
            gpus = vsettings.voxtral_gpu_fraction
    threads = vsettings.voxtral_cpu_threads or max(1, round(vsettings.voxtral_cpus))
    return VoxtralDeployment.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": vsettings.voxtral_cpus, "num_gpus": gpus,
                           "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads)}}},
        num_replicas=1, max_ongoing_requests=8,
    ).bind(vsettings.model_dump())


def _pairing(vsettings: VoxtralSettings, model_gpus: float) -> list[dict[str, float]]:
    """The hybrid's bundles (Whisper's, Voxtral's) when each model replica should bring its Voxtral partner onto
    its GPU (Voxtral on, replicas on GPUs); empty otherwise."""
    if not vsettings.voxtral_enabled or model_gpus <= 0 or vsettings.voxtral_device == "cpu":
        return []
    from actors.hybrid import hybrid_bundles

    return hybrid_bundles(vsettings, use_gpu=True)


def build_app(settings: Settings | None = None, serve_settings: ServeSettings | None = None,
              voxtral_settings: VoxtralSettings | None = None) -> Any:
    """The bound Serve application (ingress → Whisper model, and Voxtral when enabled) configured from settings."""
    settings = settings or load_settings()
    serve_settings = serve_settings or load_serve_settings()
    vsettings = voxtral_settings or load_voxtral_settings()
    model_gpus = _model_gpus(settings, serve_settings)
    bundles = _pairing(vsettings, model_gpus)
    voxtral = None if bundles else _voxtral_deployment(settings, vsettings)
    cpus = bundles[0]["CPU"] if bundles else serve_settings.cpus_per_replica
    engine_settings = settings.model_copy(update={"cpus_per_worker": cpus})
    # Ray sets OMP_NUM_THREADS to the replica's CPU count (1 for a fraction); CTranslate2's results and speed
    # depend on it, so it follows the engine's thread count instead.
    threads = settings.cpu_threads or max(1, round(cpus))
    # Paired: each replica reserves a STRICT_PACK group of the two hybrid bundles, sits in the first and starts
    # its Voxtral partner in the second (same node, same GPU); the ingress then asks the replicas for analyses.
    paired = {"placement_group_bundles": bundles, "placement_group_strategy": "STRICT_PACK"} if bundles else {}
    whisper = WhisperDeployment.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": cpus, "num_gpus": bundles[0]["GPU"] if bundles else model_gpus,
                           "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads)}}},
        **paired,
        autoscaling_config={
            "min_replicas": serve_settings.min_replicas,
            "initial_replicas": max(serve_settings.min_replicas, 1),
            "max_replicas": serve_settings.max_replicas,
            "target_ongoing_requests": serve_settings.target_ongoing_requests,
            "upscale_delay_s": serve_settings.upscale_delay_s,
            "downscale_delay_s": serve_settings.downscale_delay_s,
            "look_back_period_s": serve_settings.look_back_period_s,
        },
        max_ongoing_requests=serve_settings.max_ongoing_requests,
        max_queued_requests=serve_settings.max_queued_requests,
        backpressure_config=BackpressureConfig(retry_after_s=serve_settings.retry_after_s),
    ).bind(engine_settings.model_dump(), serve_settings.max_batch_size, serve_settings.batch_wait_ms / 1000,
           (vsettings.model_dump(), bundles) if bundles else None)
    if bundles:
        voxtral = whisper  # the replicas answer ``analyze`` through their partners
    # The ingress's router asks the model replica for its queue length before each request and backs off when
    # the answer takes over 0.1 s, which a replica busy decoding often misses; requests then trickle in one by
    # one and never batch. A 1 s deadline keeps them flowing into the replica's batch queue.
    return TranscriptionAPI.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": serve_settings.ingress_cpus,
                           "runtime_env": {"env_vars": {"RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "1.0"}}},
        max_ongoing_requests=serve_settings.ingress_max_ongoing_requests,
    ).bind(whisper, settings.model_dump(), serve_settings.model_dump(), voxtral)


def app_builder(args: dict[str, Any]) -> Any:
    """``serve deploy`` entry point: settings from the cluster's environment, ``args`` (lower-case setting
    names, from config.yaml) override them."""
    args = {k.lower(): v for k, v in (args or {}).items()}
    settings = load_settings(**{k: v for k, v in args.items() if k in Settings.model_fields})
    serve_settings = load_serve_settings(**{k: v for k, v in args.items() if k in ServeSettings.model_fields})
    voxtral_settings = load_voxtral_settings(**{k: v for k, v in args.items() if k in VoxtralSettings.model_fields})
    return build_app(settings, serve_settings, voxtral_settings)


def serve_config(serve_settings: ServeSettings) -> dict[str, Any]:
    """The ``serve deploy`` config for these settings (``serve/config.yaml`` is this for the defaults)."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": serve_settings.serve_host, "port": serve_settings.serve_port},
        "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": "serve.app:app_builder",
                          "args": {}}],
    }
