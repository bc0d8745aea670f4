"""Every failure leaves the gateway as an error body in the shape of the API that was called.

OpenAI routes: ``{"error": {"message", "type", "param", "code"}}``. Anthropic routes:
``{"type": "error", "error": {"type", "message"}, "request_id"}`` with Anthropic's types
and statuses (413 ``request_too_large``, 529 ``overloaded_error`` where OpenAI routes say
503). These are the shapes the official clients parse into typed exceptions.

What a client reads is safe to show: unexpected exceptions are logged here and answered
with a generic message, client input is repeated at most ``MAX_ECHO`` characters, and
reasons that come from the runtime lose any clause naming a server path.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dsdeploy.gateway")

MAX_ECHO = 100
"""Characters of client input an error message may repeat."""

OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    421: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "request_too_large",
    421: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
ANTHROPIC_STATUS = {503: 529}
"""Anthropic answers "try again later" with 529 ``overloaded_error``."""

PATH_LIKE = re.compile(r"(?:^|[\s('\"=])~?/[\w.-]")


def clip(text: str, limit: int = MAX_ECHO) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def client_safe(reason: str) -> str:
    """A runtime's reason without the clauses that name a file or folder on the server
    (the operator's log says where to look; a client must not learn the layout)."""
    kept = [part for part in reason.split("; ") if not PATH_LIKE.search(part)]
    return "; ".join(kept) or "the model's engine is not available; retry in a few seconds"


class ApiError(Exception):
    """Raised anywhere in a request; answered in the called API's shape by the handlers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type
        """An OpenAI error type other than the one its status implies."""
        self.headers = dict(headers or {})
        """Sent with the answer (``Retry-After`` and ``x-ratelimit-*`` on a 429)."""


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorBody(BaseModel):
    type: Literal["error"] = "error"
    error: AnthropicErrorDetail
    request_id: str | None = None


class ErrorShape(Protocol):
    """How one API family writes an error: as an answer, or as a last stream event."""

    @property
    def body_model(self) -> type[BaseModel]:
        """The body's model, for ``/openapi.json``."""
        ...

    def status(self, error: ApiError) -> int: ...

    def body(self, error: ApiError, request_id: str | None) -> BaseModel: ...

    def stream_event(self, error: ApiError, request_id: str | None) -> bytes: ...


class OpenAIShape:
    body_model = OpenAIErrorBody

    def status(self, error: ApiError) -> int:
        return error.status

    def body(self, error: ApiError, request_id: str | None) -> OpenAIErrorBody:
        kind = error.error_type or OPENAI_TYPES.get(error.status, "server_error")
        return OpenAIErrorBody(
            error=OpenAIErrorDetail(
                message=error.message, type=kind, param=error.param, code=error.code
            )
        )

    def stream_event(self, error: ApiError, request_id: str | None) -> bytes:
        data = json.dumps(self.body(error, request_id).model_dump())
        return f"data: {data}\n\n".encode()


class AnthropicShape:
    body_model = AnthropicErrorBody

    def status(self, error: ApiError) -> int:
        return ANTHROPIC_STATUS.get(error.status, error.status)

    def body(self, error: ApiError, request_id: str | None) -> AnthropicErrorBody:
        kind = ANTHROPIC_TYPES.get(self.status(error), "api_error")
        detail = AnthropicErrorDetail(type=kind, message=error.message)
        return AnthropicErrorBody(error=detail, request_id=request_id)

    def stream_event(self, error: ApiError, request_id: str | None) -> bytes:
        data = json.dumps(self.body(error, request_id).model_dump())
        return f"event: error\ndata: {data}\n\n".encode()


OPENAI = OpenAIShape()
ANTHROPIC = AnthropicShape()


def error_response(shape: ErrorShape, error: ApiError, request_id: str | None) -> JSONResponse:
    body = shape.body(error, request_id).model_dump(mode="json")
    return JSONResponse(body, status_code=shape.status(error), headers=error.headers)


def shape_for_path(path: str, shapes: Sequence[tuple[str, ErrorShape]]) -> ErrorShape:
    """``shapes``: path prefixes whose errors take another API's shape than OpenAI's."""
    return next((shape for prefix, shape in shapes if path.startswith(prefix)), OPENAI)


def install_error_handlers(app: FastAPI, shapes: Sequence[tuple[str, ErrorShape]]) -> None:
    """``shapes``: as for ``shape_for_path``."""

    def shape_for(request: Request) -> ErrorShape:
        return shape_for_path(request.url.path, shapes)

    def request_id(request: Request) -> str | None:
        ctx = getattr(request.state, "ctx", None)
        return getattr(ctx, "id", None)

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(shape_for(request), exc, request_id(request))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        """Starlette's own 404/405 for unknown routes and methods."""
        assert isinstance(exc, StarletteHTTPException)
        message = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(
            exc.status_code, "request failed"
        )
        error = ApiError(exc.status_code, message)
        return error_response(shape_for(request), error, request_id(request))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """Starlette answers these outside the middlewares, so the id header is set here."""
        ctx = getattr(request.state, "ctx", None)
        log.exception(
            "unexpected error serving %s %s (request %s, key %s)",
            request.method,
            request.url.path,
            getattr(ctx, "id", None),
            getattr(ctx, "key_id", None),  # the public id, never the key
        )
        error = ApiError(500, "internal error in the gateway; it has been logged")
        response = error_response(shape_for(request), error, request_id(request))
        if (rid := request_id(request)) is not None:
            response.headers["x-request-id"] = rid
        return response

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
