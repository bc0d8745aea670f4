"""Who may call the gateway: an API key on every path, checked before any route runs.

The middleware wraps the whole app, so it is closed by default: a route added later, even
while serving, needs a key without anyone remembering to ask for one. Only ``PUBLIC_PATHS``
(probes that a load balancer calls without credentials) are open, and ``/metrics`` takes
its own token when one is set. A key is read from ``Authorization: Bearer <key>`` or
Anthropic's ``x-api-key: <key>``; a refusal is a 401 in the called API's error shape with
``WWW-Authenticate: Bearer``, and repeats at most the key's public id.

Keys are required once the key store has an active key (or ``require_keys`` is set); with
no store at all (``AuthConfig()``) only ``/metrics`` is guarded. A key with a models
allowlist is refused other models before an engine is leased (``ModelAllowlist``). The
operator routes (``ADMIN_PATHS``) need an ``admin`` key: another valid key gets 403.

A client address that sent ``auth_failures`` wrong credentials within the window gets 429
with ``Retry-After`` before its key is even looked up (``FailedAuthThrottle``), whatever it
sends, until its oldest failure leaves the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
from collections.abc import AsyncIterator, Sequence
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
from dsdeploy.security.auth_throttle import FailedAuthThrottle
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import ApiKey, public_id

PUBLIC_PATHS = frozenset({"/health", "/health/live", "/health/ready"})
"""Probes a load balancer or an orchestrator calls without credentials."""
METRICS_PATH = "/metrics"
ADMIN_PATHS = frozenset({"/ps", METRICS_PATH})
"""Operator routes: an admin key (or, for ``/metrics``, its own token when one is set)."""
HOW_TO_SEND = "send it as `Authorization: Bearer <key>` or `x-api-key: <key>`"
POLICY_VIOLATION = 1008
"""WebSocket close code for a refused connection."""


@dataclass(frozen=True)
class AuthConfig:
    keys: KeyCache | None = None
    """The verified-key cache over the key store; None: no store, API paths are open."""
    metrics_token: SecretStr | None = None
    throttle: FailedAuthThrottle | None = None
    """Counts wrong credentials per client address; None: not counted."""


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


def is_admin_path(path: str) -> bool:
    return path in ADMIN_PATHS or is_metrics(path)


ADMIN_ONLY = ApiError(
    403,
    "this route needs an admin API key (`dsdeploy keys create --admin`)",
    code="admin_key_required",
)


def throttled(wait_s: float) -> ApiError:
    return ApiError(
        429,
        "too many failed authentication attempts from this address; retry later",
        code="too_many_failed_attempts",
        headers={"retry-after": str(math.ceil(wait_s))},
    )


DECISIONS = {403: "forbidden_scope", 429: "auth_throttled"}
"""The audit's decision for a refusal by its status; the others are ``unauthenticated``."""


def answers(path: str) -> dict[int, str]:
    """What this middleware may answer on ``path`` instead of the route, for the API's
    document."""
    if path in PUBLIC_PATHS:
        return {}
    found = {
        401: "no valid API key",
        429: "too many failed authentication attempts from this address; see Retry-After",
        503: "the key database is not answering; retry",
    }
    if is_admin_path(path):
        found[403] = "the API key is valid but not an admin key"
    return found


def client_of(scope: Scope, ctx: RequestContext | None) -> str:
    """The address failures are counted for: the network guard's decision (a proxy's
    client), else the peer's."""
    if ctx is not None and ctx.client_ip is not None:
        return ctx.client_ip
    peer = scope.get("client")
    return str(peer[0]) if peer else "unknown"


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
        self.throttle = config.throttle
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        ctx: RequestContext | None = scope.get("state", {}).get("ctx")
        presented = presented_key(Headers(scope=scope))
        try:
            error = await self.check(scope["path"], presented, ctx, client_of(scope, ctx))
        except KeyStoreUnavailable as exc:  # closed: no check, no entry
            error = ApiError(503, str(exc), code="auth_unavailable")
        if error is None:
            await self.app(scope, receive, send)
        else:
            await self.refuse(scope, receive, send, ctx, error)

    async def check(
        self, path: str, presented: str | None, ctx: RequestContext | None, client: str
    ) -> ApiError | None:
        """None when the request may pass, else why it may not."""
        by_token = is_metrics(path) and self.metrics_token is not None
        if not by_token and not await self.enforced():
            return None
        if self.throttle is not None and (wait_s := await self.throttle.blocked(client)):
            return throttled(wait_s)
        error = (
            self.token_refusal(presented)
            if by_token
            else await self.key_refusal(path, presented, ctx)
        )
        if error is not None and error.status == 401 and presented and self.throttle:
            await self.throttle.failed(client)
        return error

    def token_refusal(self, presented: str | None) -> ApiError | None:
        assert self.metrics_token is not None
        given = (presented or "").encode("latin-1")  # headers are read as latin-1
        if hmac.compare_digest(given, self.metrics_token):
            return None
        return ApiError(
            401, f"/metrics needs the metrics token: {HOW_TO_SEND}", code="invalid_token"
        )

    async def key_refusal(
        self, path: str, presented: str | None, ctx: RequestContext | None
    ) -> ApiError | None:
        """A valid key (noted on the context) passes, if the route does not need an admin."""
        key = await self.verify(presented) if presented else None
        if key is None:
            return refusal(presented)
        if ctx is not None:
            ctx.key, ctx.key_id = key, key.id
        return ADMIN_ONLY if is_admin_path(path) and not key.is_admin else None

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
            ctx.decision = DECISIONS.get(error.status, "unauthenticated")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            return
        shape = shape_for_path(scope["path"], self.shapes)
        response = error_response(shape, error, None if ctx is None else ctx.id)
        if error.status == 401:
            response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


@contextlib.asynccontextmanager
async def keys_kept_fresh(keys: KeyCache | None) -> AsyncIterator[None]:
    """While the gateway serves, the keys in use are checked against the store every half
    TTL, off the request path (``KeyCache.refresh``)."""
    if keys is None or keys.ttl_s <= 0:
        yield
        return
    refreshing = asyncio.ensure_future(refresh_every_half_ttl(keys))
    try:
        yield
    finally:
        refreshing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refreshing


async def refresh_every_half_ttl(keys: KeyCache) -> None:
    while True:
        await asyncio.sleep(keys.ttl_s / 2)
        # A store not answering is logged by the store; requests then ask it themselves.
        with contextlib.suppress(KeyStoreUnavailable):
            await anyio.to_thread.run_sync(keys.refresh)


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
