"""Cross-origin calls from browsers, for the origins the operator lists (none by default).

Starlette's ``CORSMiddleware`` answers the browser; only its refusal of a preflight (a
plain-text 400 ``Disallowed CORS origin``) is rewritten as a 403 in the called API's error
shape, with a request id and the decision noted for the audit, like every other refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.errors import ApiError, ErrorShape, error_response, shape_for_path

REFUSED = 403
"""Starlette says 400, but nothing is wrong with the request: this origin may not call."""


def is_preflight(scope: Scope, headers: Headers) -> bool:
    """As Starlette tells a preflight from a cross-origin ``OPTIONS`` call."""
    return (
        scope["method"] == "OPTIONS"
        and "origin" in headers
        and "access-control-request-method" in headers
    )


class Cors(CORSMiddleware):
    """Allows ``origins`` to call with GET and POST, any request header (the official SDKs
    send many ``x-stainless-*`` ones), no credentials, ``x-request-id`` readable."""

    def __init__(
        self, app: ASGIApp, origins: Sequence[str], shapes: Sequence[tuple[str, ErrorShape]]
    ) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_preflight(scope, headers := Headers(scope=scope)):
            await super().__call__(scope, receive, send)
            return
        answer = self.preflight_response(request_headers=headers)
        if answer.status_code == 400:
            ctx: RequestContext = scope["state"]["ctx"]
            ctx.decision = "cors_refused"
            kept = {
                name: value
                for name, value in answer.headers.items()
                if not name.startswith("content-")
            }
            reason = bytes(answer.body).decode()  # "Disallowed CORS origin, method"
            error = ApiError(
                REFUSED,
                f"this browser origin may not call this server ({reason})",
                code="cors_not_allowed",
                headers=kept,
            )
            answer = error_response(shape_for_path(scope["path"], self.shapes), error, ctx.id)
        await answer(scope, receive, send)
