"""Every failure leaves the gateway as an OpenAI-style error body with the right status.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` — the shape the
official clients parse into typed exceptions. Unexpected exceptions are logged here and
answered with a generic message: their text never reaches the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dsdeploy.gateway")

TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raised inside a route; turned into its JSON error by the handler below."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type or TYPE_BY_STATUS.get(status, "server_error")

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 for unknown routes and methods, in OpenAI's shape."""
    assert isinstance(exc, StarletteHTTPException)
    message = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(
        exc.status_code, "request failed"
    )
    return ApiError(exc.status_code, message).response()


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return ApiError(500, "internal error in the gateway; it has been logged").response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
