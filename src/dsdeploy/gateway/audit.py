"""One audit record for every HTTP request the gateway answers, refusals included.

``RequestContextMiddleware`` calls ``RequestAudit.record`` in its ``finally`` block, which
every request passes whatever answers it (a route, a hook's refusal, the body cap, an
unknown path, an error). The record is built from the request's context and queued for the
background writer; the probes (``/health``, ``/health/live``, ``/health/ready``) are not
recorded: load balancers and orchestrators poll them every few seconds, and they carry no
key and reach no model.

The hook (``RequestAudit.hook``) reads stream events, so streamed answers' token counts are
known too, and with ``content="redacted"`` keeps the prompt text until the record is
queued; the writer thread redacts it, so only redacted text is ever stored.
"""

from __future__ import annotations

from typing import Any, Literal

from starlette.types import Scope

from dsdeploy.gateway.auth import PUBLIC_PATHS
from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.schemas import ModelRequest
from dsdeploy.security.audit import AuditRecord, utc_now
from dsdeploy.security.audit_writer import AuditWriter, Pending

TEXT_FIELDS = frozenset({"content", "text", "prompt", "input", "system", "instructions"})
"""Request fields that hold what the user wrote, in the OpenAI and Anthropic APIs."""


def prompt_text(value: Any, inside: bool = False) -> list[str]:
    """The strings a request body holds under its text fields, in order."""
    if isinstance(value, str):
        return [value] if inside else []
    if isinstance(value, list):
        return [text for item in value for text in prompt_text(item, inside)]
    if isinstance(value, dict):
        return [
            text
            for key, item in value.items()
            for text in prompt_text(item, inside or key in TEXT_FIELDS)
        ]
    return []


def micros(start: float | None, end: float | None) -> int | None:
    return None if start is None or end is None else round((end - start) * 1e6)


def route_of(ctx: RequestContext, scope: Scope) -> str:
    """The pipeline endpoint's name, else the matched route's template; a path no route
    matched is not kept (it is whatever the client typed)."""
    if ctx.route is not None:
        return ctx.route
    matched = getattr(scope.get("route"), "path", None)
    return f"{scope.get('method', '')} {matched}" if matched else "unmatched"


def client_of(ctx: RequestContext, scope: Scope) -> str | None:
    if ctx.client_ip is not None:
        return ctx.client_ip
    peer = scope.get("client")
    return str(peer[0]) if peer else None


def record_of(ctx: RequestContext, scope: Scope) -> AuditRecord:
    timings = ctx.timings
    usage = ctx.usage
    return AuditRecord(
        time=utc_now(),
        request_id=ctx.id,
        key_id=ctx.key_id,
        client_ip=client_of(ctx, scope),
        route=route_of(ctx, scope),
        model=ctx.model,
        status=ctx.status,
        decision=ctx.decision,
        prompt_tokens=usage.input_tokens if usage else None,
        completion_tokens=usage.output_tokens if usage else None,
        latency_us=micros(timings.received, timings.done),
        ttft_us=micros(timings.received, timings.first_byte),
    )


class ContentHook(Hook):
    """Notes the prompt of each request while it runs (``--audit-content redacted``)."""

    def __init__(self) -> None:
        self.prompts: dict[str, str] = {}

    async def before(self, ctx: RequestContext, body: ModelRequest) -> None:
        self.prompts[ctx.id] = "\n".join(prompt_text(body.model_dump()))


class RequestAudit:
    """Turns finished requests into queued audit records."""

    def __init__(self, writer: AuditWriter, content: Literal["off", "redacted"] = "off") -> None:
        self.writer = writer
        self.content = ContentHook() if content == "redacted" else None
        self.hooks: list[Hook] = [self.content] if self.content else []

    async def record(self, ctx: RequestContext, scope: Scope) -> None:
        if scope.get("path") in PUBLIC_PATHS:
            return
        raw = self.content.prompts.pop(ctx.id, None) if self.content else None
        await self.writer.put(Pending(record_of(ctx, scope), raw))
