"""OpenAI's error shape for every failure, and the FastAPI handlers that enforce it.

Clients written against OpenAI (its SDKs included) read ``{"error": {"message", "type", "param", "code"}}``
to decide what to show and whether to retry; an HTML page or a bare traceback would break them and leak
internals. So each path out of the app (our errors, validation errors, unknown routes, anything unexpected)
ends in :func:`error_response`, and unexpected exceptions are logged here with an id the client also gets.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.schemas import ErrorBody, ErrorResponse

log = logging.getLogger("rayscribe.serve")

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
SERVER_ERROR = "server_error"
OVERLOADED = "overloaded_error"


class APIError(Exception):
    """An error to answer with ``status`` and OpenAI's body; raised anywhere in the request path."""

    def __init__(self, status: int, message: str, *, type: str = INVALID_REQUEST, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(message=message, type=type, param=param, code=code)
        self.headers = headers or {}


def error_response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=body).model_dump(), status_code=status, headers=headers)


def _param(loc: tuple) -> str | None:
    """The client-facing field name of a validation error's location (``("body", "file")`` → ``file``)."""
    names = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    if not names:
        return None
    name = names[0]
    return "timestamp_granularities[]" if name.startswith("timestamp_granularities") else name


def validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 list → one 400 naming the first bad field, as OpenAI answers."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = _param(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = f"missing required parameter: '{param}'" if param else "missing required parameter"
        code = "missing_required_parameter"
    else:
        message = f"invalid value for '{param}': {message}" if param else message
        code = "invalid_value"
    return APIError(400, message, param=param, code=code)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception the app can raise to OpenAI's error shape."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return error_response(exc.status, exc.body, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        err = validation_error(exc)
        return error_response(err.status, err.body)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {400: "invalid_request_body", 404: "not_found", 405: "method_not_allowed",
                413: "file_too_large"}.get(exc.status_code)
        kind = SERVER_ERROR if exc.status_code >= 500 else INVALID_REQUEST
        param = "file" if exc.status_code == 413 else None
        return error_response(exc.status_code, ErrorBody(message=str(exc.detail), type=kind, param=param,
                                                         code=code), dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = secrets.token_hex(6)
        log.error("unexpected error %s on %s %s: %s", incident, request.method, request.url.path, exc,
                  exc_info=exc)
        return error_response(500, ErrorBody(
            message=f"the server had an error while processing your request (incident {incident})",
            type=SERVER_ERROR, code="internal_error"))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
