"""One log line per HTTP request, written once its answer is over (``access_log`` on).

``RequestContextMiddleware`` calls ``AccessLog.record`` in the same ``finally`` block as the
audit, so a line exists for every answer — pipeline routes, refusals, 413s, unknown paths —
with what uvicorn's access line cannot have: the request id, the endpoint's name, the status
actually sent, the duration to the last byte, the key id and the tokens. The route is the
endpoint's name or the matched route's template, never the typed path (which may hold
anything); a model the client made up is logged as ``unknown``. The probes are left out,
as in the audit: load balancers and orchestrators poll them every few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import Scope

from dsdeploy.gateway.audit import micros, route_of
from dsdeploy.gateway.auth import PUBLIC_PATHS
from dsdeploy.gateway.context import RequestContext

log = logging.getLogger("dsdeploy.access")


def milliseconds(start: float | None, end: float | None) -> float | None:
    elapsed = micros(start, end)
    return None if elapsed is None else elapsed / 1000


class AccessLog:
    """``model_label`` maps the name a request gave to what may be logged (the metrics'
    rule: a served model, ``unknown`` or ``none``)."""

    def __init__(self, model_label: Callable[[str | None], str]) -> None:
        self.model_label = model_label

    async def record(self, ctx: RequestContext, scope: Scope) -> None:
        if scope.get("path") in PUBLIC_PATHS or not log.isEnabledFor(logging.INFO):
            return
        route = route_of(ctx, scope)
        timings = ctx.timings
        duration = milliseconds(timings.received, timings.done)
        fields: dict[str, object] = {
            "request_id": ctx.id,
            "route": route,
            "model": self.model_label(ctx.model),
            "status": ctx.status,
            "decision": ctx.decision,
            "key_id": ctx.key_id,
            "stream": ctx.stream,
            "duration_ms": duration,
            "ttft_ms": milliseconds(timings.received, timings.first_byte),
        }
        if ctx.usage is not None:
            fields["prompt_tokens"] = ctx.usage.input_tokens
            fields["completion_tokens"] = ctx.usage.output_tokens
        log.info("%s %s %s %.1f ms", ctx.id, route, ctx.status, duration or 0.0, extra=fields)
