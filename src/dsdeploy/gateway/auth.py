"""Who may call the gateway: an API key on every path, checked before any route runs.

The middleware wraps the whole app, so it is closed by default: a route added later, even
while serving, needs a key without anyone remembering to ask for one. Only ``PUBLIC_PATHS``
(probes that a load balancer calls without credentials) are open, and ``/metrics`` takes
its own token when one is set. A key is read from ``Authorization: Bearer <key>`` or
Anthropic's ``x-api-key: <key>``; a refusal is a 401 in the called API's error shape with
``WWW-Authenticate: Bearer``, and repeats at most the key's public id.

Keys are required once the key store has an active key (or ``require_keys`` is set); with
no store at all (``AuthConfig()``) only ``/metrics`` is guarded. A key with a models
allowlist is refused other models before an engine is leased (``ModelAllowlist``).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.to_thread
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from dsdeploy.errors import KeyStoreUnavailable
from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.errors import ApiError, ErrorShape, clip, error_response, shape_for_path
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.schemas import ModelRequest
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import ApiKey, public_id

PUBLIC_PATHS = frozenset({"/health"})
METRICS_PATH = "/metrics"
HOW_TO_SEND = "send it as `Authorization: Bearer <key>` or `x-api-key: <key>`"
POLICY_VIOLATION = 1008
"""WebSocket close code for a refused connection."""


@dataclass(frozen=True)
class AuthConfig:
    keys: KeyCache | None = None
    """The verified-key cache over the key store; None: no store, API paths are open."""
    metrics_token: SecretStr | None = None


def presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip()
    return headers.get("x-api-key")


def refusal(presented: str | None) -> ApiError:
    if not presented:
        message = f"no API key: {HOW_TO_SEND}"
    elif (shown := public_id(presented)) is not None:
        message = f"the API key {shown}… is not valid: unknown, revoked or expired"
    else:
        message = f"the API key is not valid: keys look like dsk-<id>.<secret>; {HOW_TO_SEND}"
    return ApiError(401, message, code="invalid_api_key")


def is_metrics(path: str) -> bool:
    return path == METRICS_PATH or path.startswith(METRICS_PATH + "/")


class AuthMiddleware:
    """Admits a request with a valid key (noted on its context) or answers 401. Runs inside
    ``RequestContextMiddleware``, so the context exists and the 401 has a request id."""

    def __init__(
        self, app: ASGIApp, config: AuthConfig, shapes: Sequence[tuple[str, ErrorShape]]
    ) -> None:
        self.app = app
        self.keys = config.keys
        token = config.metrics_token
        self.metrics_token = None if token is None else token.get_secret_value().encode()
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        ctx: RequestContext | None = scope.get("state", {}).get("ctx")
        error = await self.check(scope["path"], presented_key(Headers(scope=scope)), ctx)
        if error is None:
            await self.app(scope, receive, send)
        else:
            await self.refuse(scope, receive, send, ctx, error)

    async def check(
        self, path: str, presented: str | None, ctx: RequestContext | None
    ) -> ApiError | None:
        """None when the request may pass, else why it may not."""
        if is_metrics(path) and self.metrics_token is not None:
            given = (presented or "").encode("latin-1")  # headers are read as latin-1
            if hmac.compare_digest(given, self.metrics_token):
                return None
            return ApiError(
                401, f"/metrics needs the metrics token: {HOW_TO_SEND}", code="invalid_token"
            )
        try:
            admitted = await self.admit(presented, ctx)
        except KeyStoreUnavailable as exc:  # closed: no check, no entry
            return ApiError(503, str(exc), code="auth_unavailable")
        return None if admitted else refusal(presented)

    async def admit(self, presented: str | None, ctx: RequestContext | None) -> bool:
        """Whether the request may pass: keys are off, or it has a valid one (noted)."""
        if not await self.enforced():
            return True
        key = await self.verify(presented) if presented else None
        if key is not None and ctx is not None:
            ctx.key, ctx.key_id = key, key.id
        return key is not None

    async def enforced(self) -> bool:
        if self.keys is None:
            return False
        known = self.keys.enforced_cached()
        if known is None:
            known = await anyio.to_thread.run_sync(self.keys.refresh_enforced)
        return known

    async def verify(self, presented: str) -> ApiKey | None:
        assert self.keys is not None  # enforced() said there is a store
        key = self.keys.cached(presented)
        if key is None:
            key = await anyio.to_thread.run_sync(self.keys.verify, presented)
        return key

    async def refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext | None,
        error: ApiError,
    ) -> None:
        if ctx is not None:
            ctx.decision = "unauthenticated"
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            return
        shape = shape_for_path(scope["path"], self.shapes)
        response = error_response(shape, error, None if ctx is None else ctx.id)
        if error.status == 401:
            response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


def may_use(key: object, model: str) -> bool:
    """Whether the request's key (``ctx.key``; None when keys are off) allows ``model``."""
    return not isinstance(key, ApiKey) or key.allows(model)


def not_allowed(key: object, model: str) -> ApiError:
    """The same answer whether the model exists or not: a key learns no other model."""
    allowed = ", ".join(key.models) if isinstance(key, ApiKey) else ""
    return ApiError(
        404,
        f"the model {clip(model)!r} does not exist or this API key may not use it; "
        f"it may use: {allowed}",
        code="model_not_found",
        param="model",
    )


class ModelAllowlist(Hook):
    """Refuses a model outside the key's allowlist before an engine is leased."""

    async def before(self, ctx: RequestContext, body: ModelRequest) -> None:
        if not may_use(ctx.key, body.model):
            raise not_allowed(ctx.key, body.model)
