"""Tool calls as clients expect them, whichever engine wrote them.

OpenAI chat completions: ``finish_reason: "tool_calls"`` only when the choice carries
calls, and an empty ``tool_calls`` list never reaches the client (DeepSeek-V3#944: an
answer that said ``tool_calls`` with none sent agents looping for calls that never came);
a choice that did call a tool and stopped says ``tool_calls``. Only requests that offer
tools are read, so every other answer keeps the byte relay.

Anthropic Messages: llama-server turns ``tool_choice {"type": "tool", "name": …}`` into
"any tool" and ignores ``{"type": "none"}``, so the gateway narrows ``tools`` to the named
one (a name not among them is a 400), or leaves the tools out, before the engine sees
the request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.errors import ApiError
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.schemas import ModelRequest
from dsdeploy.gateway.sse import SseEvent

CHAT = "chat.completions"
MESSAGES = "messages"
KEY = "tool_calls"


@dataclass
class Calls:
    """Which choices of one answer have carried a tool call so far."""

    called: set[int] = field(default_factory=set)

    def settle(self, choice: dict[str, Any], key: str) -> bool:
        """Drop an empty call list, note real calls, and make the finish reason agree
        with them; whether the choice changed."""
        changed = False
        index = choice.get("index", 0)
        message = choice.get(key)
        if isinstance(message, dict) and "tool_calls" in message:
            if message["tool_calls"]:
                self.called.add(index)
            else:
                del message["tool_calls"]
                changed = True
        finish = choice.get("finish_reason")
        if finish == "tool_calls" and index not in self.called:
            choice["finish_reason"] = "stop"
            changed = True
        elif finish == "stop" and index in self.called:
            choice["finish_reason"] = "tool_calls"
            changed = True
        return changed

    def settle_all(self, payload: dict[str, Any], key: str) -> bool:
        choices = payload.get("choices")
        changed = False
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict):
                changed = self.settle(choice, key) or changed
        return changed


class ToolCallHook(Hook):
    async def before(self, ctx: RequestContext, body: ModelRequest) -> None:
        choice = given(body, "tool_choice")
        if ctx.route != MESSAGES or not isinstance(choice, dict) or choice.get("type") != "tool":
            return
        names = {t.get("name") for t in given(body, "tools") or () if isinstance(t, dict)}
        if choice.get("name") not in names:
            message = "tool_choice names a tool that is not in tools"
            raise ApiError(400, message, param="tool_choice")

    async def forward(self, ctx: RequestContext, body: ModelRequest, raw: bytes) -> bytes:
        offered = given(body, "tools")
        if ctx.route == CHAT and offered:
            ctx.hook_state[KEY] = Calls()
        elif ctx.route == MESSAGES and offered:
            return narrow_anthropic_tools(raw)
        return raw

    def reads_events_of(self, ctx: RequestContext) -> bool:
        return KEY in ctx.hook_state

    async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
        payload = event.payload
        if isinstance(payload, dict) and ctx.hook_state[KEY].settle_all(payload, "delta"):
            event.replace_payload(payload)
        return event

    async def on_answer(self, ctx: RequestContext, answer: Any) -> Any:
        if isinstance(answer, dict):
            ctx.hook_state[KEY].settle_all(answer, "message")
        return answer


def given(body: ModelRequest, name: str) -> Any:
    """A request field, declared by its schema (Anthropic's ``tools``) or passed along."""
    extra = body.model_extra or {}
    return extra[name] if name in extra else getattr(body, name, None)


def narrow_anthropic_tools(raw: bytes) -> bytes:
    """The request with only the tools its ``tool_choice`` allows."""
    body = json.loads(raw)
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "none":
        del body["tools"], body["tool_choice"]
    elif kind == "tool":
        body["tools"] = [t for t in body["tools"] if t.get("name") == choice["name"]]
    else:
        return raw
    return json.dumps(body, ensure_ascii=False).encode()
