"""The HTTP API's per-request metrics middleware, on a real FastAPI app over ASGI: one record per request with
the route template, the status actually sent and the time to answer, including refusals before routing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from serve.auth import APIKeyChecker, GuardMiddleware
from serve.request_metrics import RequestMetricsMiddleware


def _app(records: list[tuple[str, int, float]]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models/{model}")
    async def model(model: str) -> dict[str, str]:
        return {"id": model}

    @app.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    @app.get("/v1/stream")
    async def stream() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            for n in range(3):
                await asyncio.sleep(0.05)  # the stream's own pacing, so its length shows in the time
                yield f"data: {n}\n\n".encode()
        return StreamingResponse(events(), media_type="text/event-stream")

    app.add_middleware(GuardMiddleware, checker=APIKeyChecker(["sk-good"]), limit_bytes=1000)
    app.add_middleware(RequestMetricsMiddleware, record=lambda *r: records.append(r))
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://test", headers={"Authorization": "Bearer sk-good"})


def test_each_request_is_recorded_once_with_its_route_template_and_status() -> None:
    records: list[tuple[str, int, float]] = []

    async def run() -> list[int]:
        async with _client(_app(records)) as client:
            answers = [await client.get("/v1/models/whisper-1"), await client.get("/v1/nowhere"),
                       await client.get("/v1/models/x", headers={"Authorization": "Bearer sk-bad"}),
                       await client.post("/v1/models/x", content=b"x" * 200_000)]
            return [a.status_code for a in answers]

    statuses = asyncio.run(run())
    assert statuses == [200, 404, 401, 413]
    assert [(route, status) for route, status, _ in records] == [
        ("/v1/models/{model}", 200), ("unmatched", 404), ("unmatched", 401), ("unmatched", 413)]
    assert all(0 < seconds < 5 for *_, seconds in records)


def test_a_handler_that_raises_counts_as_500() -> None:
    records: list[tuple[str, int, float]] = []

    async def run() -> int:
        async with _client(_app(records)) as client:
            return (await client.get("/v1/broken")).status_code

    assert asyncio.run(run()) == 500
    assert [(route, status) for route, status, _ in records] == [("/v1/broken", 500)]


def test_a_streamed_response_is_timed_to_its_last_event() -> None:
    records: list[tuple[str, int, float]] = []

    async def run() -> str:
        async with _client(_app(records)) as client:
            return (await client.get("/v1/stream")).text

    assert asyncio.run(run()).count("data:") == 3
    [(route, status, seconds)] = records
    assert (route, status) == ("/v1/stream", 200)
    assert seconds >= 0.15  # three events 50 ms apart: the whole stream, not just its first bytes
