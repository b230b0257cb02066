"""Optional API keys and the upload size limit: the checks that run before any work is done.

Keys are compared with :func:`hmac.compare_digest` against every configured key (no early exit), so the
answer time tells an attacker nothing about how much of a key was right. The upload limit is enforced on the
raw request body as it arrives, before multipart parsing spools it to disk, so an oversize upload costs at
most the limit in memory and never reaches the decoder.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from serve.errors import APIError
from serve.schemas import ErrorResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Room for the multipart framing and the small form fields around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class APIKeyChecker:
    """Checks ``Authorization: Bearer <key>`` when keys are configured; does nothing when none are."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> None:
        """Raise a 401 :class:`APIError` in OpenAI's words unless the header holds a configured key."""
        if not self._keys:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if not authorization or scheme.lower() != "bearer" or not token.strip():
            raise APIError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                type="invalid_request_error", code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = token.strip().encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise APIError(401, "Incorrect API key provided.", type="invalid_request_error",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class _TooLarge(HTTPException):
    """Raised from inside the body stream; FastAPI passes HTTPExceptions from form parsing through unchanged,
    so the app's handler answers it (see :func:`serve.errors.install_error_handlers`)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, str(too_large_error(limit_bytes)))


def too_large_error(limit_bytes: int) -> APIError:
    return APIError(413, f"the uploaded file is too large: the limit is {limit_bytes / 1024 / 1024:g} MB",
                    param="file", code="file_too_large")


class GuardMiddleware:
    """Runs before routing and before the body is read: API key check on ``/v1/`` routes (401), then the upload
    limit (413), by the declared ``Content-Length`` when there is one, else by counting bytes as they arrive.
    ``/health`` stays open so load balancers and probes need no key."""

    def __init__(self, app: ASGIApp, checker: APIKeyChecker, limit_bytes: int) -> None:
        self.app = app
        self.checker = checker
        self.limit_bytes = limit_bytes
        self.body_limit = limit_bytes + MULTIPART_OVERHEAD_BYTES

    @staticmethod
    async def _reject(send: Send, err: APIError) -> None:
        payload = json.dumps(ErrorResponse(error=err.body).model_dump()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        if str(scope.get("path", "")).startswith("/v1/"):
            authorization = headers.get(b"authorization")
            try:
                self.checker.check(authorization.decode("latin-1") if authorization is not None else None)
            except APIError as err:
                await self._reject(send, err)
                return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > self.body_limit:
            await self._reject(send, too_large_error(self.limit_bytes))
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.body_limit:
                    raise _TooLarge(self.limit_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send, too_large_error(self.limit_bytes))
