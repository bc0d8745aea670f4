"""What the gateway knows about one request while it runs, for hooks, logs and metrics.

One ``RequestContext`` is made per HTTP request by the pipeline's middleware, stored in the
request's state, and handed to every hook. Its ``id`` is the ``x-request-id`` header of the
answer, so a client's report can be matched with the operator's log.
"""

from __future__ import annotations

import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from dsdeploy.engines.base import EngineCapabilities


@dataclass(frozen=True)
class Usage:
    """Token counts the engine reported, in whichever API's words it used."""

    input_tokens: int
    output_tokens: int

    @classmethod
    def from_payload(cls, payload: Any) -> Usage | None:
        """The ``usage`` object of an answer or event: OpenAI chat and completions say
        prompt/completion tokens; the Responses and Anthropic APIs say input/output.
        Anthropic's stream splits it between ``message_start`` and ``message_delta``."""
        if not isinstance(payload, dict):
            return None
        usage = payload.get("usage")
        for inner in ("response", "message"):  # Responses and Anthropic events nest it
            if usage is None and isinstance(payload.get(inner), dict):
                usage = payload[inner].get("usage")
        if not isinstance(usage, dict):
            return cls.from_timings(payload.get("timings"))
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if not isinstance(prompt, int) and not isinstance(completion, int):
            return None
        return cls(
            prompt if isinstance(prompt, int) else 0,
            completion if isinstance(completion, int) else 0,
        )

    @classmethod
    def from_timings(cls, timings: Any) -> Usage | None:
        """llama-server's own counts, which its last stream event carries even when the
        client did not ask for usage (``stream_options.include_usage``): tokens evaluated
        plus tokens taken from the cache, and tokens predicted."""
        if not isinstance(timings, dict) or not isinstance(timings.get("predicted_n"), int):
            return None
        prompt = [timings.get(key, 0) for key in ("prompt_n", "cache_n")]
        return cls(sum(n for n in prompt if isinstance(n, int)), timings["predicted_n"])

    def merge(self, later: Usage | None) -> Usage:
        """Counts from a later event win where they are known (non-zero)."""
        if later is None:
            return self
        return Usage(
            later.input_tokens or self.input_tokens, later.output_tokens or self.output_tokens
        )


@dataclass
class Timings:
    """Monotonic clock readings (seconds); None until the stage is reached."""

    received: float = field(default_factory=time.monotonic)
    upstream_start: float | None = None
    """The request was handed to the engine."""
    first_byte: float | None = None
    """The engine's first answer bytes arrived (a plain answer arrives all at once)."""
    last_byte: float | None = None
    """A stream's last engine bytes were relayed (None for plain answers)."""
    done: float | None = None
    """The answer's last byte was sent, or the request failed or was abandoned."""


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


@dataclass
class RequestContext:
    """One request's identity, route, model and progress."""

    id: str = field(default_factory=new_request_id)
    route: str | None = None
    """The pipeline endpoint's name (``chat.completions``, ``messages``…); None for
    operations routes and unknown paths."""
    model: str | None = None
    """The model the request names, once its body is checked."""
    key_id: str | None = None
    """The public id of the API key it was admitted with (never the key itself)."""
    key: Any = None
    """The admitted key's record (``dsdeploy.security.keys.ApiKey``): its models and limits."""
    client_ip: str | None = None
    """The client's address: the peer's, or the forwarded one when the peer is a trusted
    proxy."""
    decision: str = "allowed"
    """Why it was answered as it was, for the audit: ``allowed`` or the refusal's reason
    (``unauthenticated``, ``forbidden_ip``, ``rate_limited``, …)."""
    stream: bool = False
    engine: EngineCapabilities | None = None
    """What the leased engine does for this model, once it is leased."""
    hook_state: dict[str, Any] = field(default_factory=dict)
    """What a hook keeps about this request between its stages, under the hook's own key."""
    status: int | None = None
    """The HTTP status sent; 499 when the client left before the answer."""
    usage: Usage | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with the answer whatever its status, unless the answer has them already (the
    ``x-ratelimit-*`` of its key's limits); lower-case names."""
    timings: Timings = field(default_factory=Timings)
    received_at: float = field(default_factory=time.time)
    """Wall-clock time of arrival, for logs."""

    def record_usage(self, payload: Any) -> None:
        found = Usage.from_payload(payload)
        if found is not None:
            self.usage = found if self.usage is None else self.usage.merge(found)


current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)
"""The request being handled by this task (and the tasks and threads it starts), so that a
log line written anywhere on its way can name it (``gateway.logs.RequestFields``)."""
