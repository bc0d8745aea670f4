"""A reasoning model's thinking, in the same fields whichever engine wrote it.

Clients read it as ``reasoning_content`` (DeepSeek's API, llama-server, SGLang) or
``reasoning`` (vLLM since 2025-11); the gateway answers in either or both
(``reasoning_field``). An engine with its own parser (llama-server started with
``--reasoning-format deepseek``) has already cut the thinking out: its field is renamed.
For an engine without one, ``<think>…</think>`` is cut out of ``content`` here, streamed or
not (``gateway.think``); a think block the engine's parser missed is cut out the same way.

Only chat completions of reasoning models (``EngineCapabilities.reasoning``) are read, so
other requests keep the byte relay. Per request, ``include_reasoning: false`` drops the
thinking, and earlier assistant turns may carry theirs under either name: it is renamed to
the engine's before the engine sees it. ``usage.completion_tokens_details.reasoning_tokens``
is the engine's count when it gives one, else the completion tokens shared in proportion
to the characters of reasoning and answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.schemas import ChatCompletionRequest, ModelRequest
from dsdeploy.gateway.sse import SseEvent
from dsdeploy.gateway.think import ThinkSplitter

ReasoningField = Literal["both", "reasoning_content", "reasoning"]
NAMES = ("reasoning_content", "reasoning")
WATCHED = ("content", *NAMES)
FIELDS: dict[str, tuple[str, ...]] = {
    "both": NAMES,
    "reasoning_content": ("reasoning_content",),
    "reasoning": ("reasoning",),
}
ROUTE = "chat.completions"
KEY = "reasoning"
ENGINE_INPUT_FIELD = "reasoning_content"
"""What earlier turns' reasoning is renamed to for an engine without a parser of its own:
the name chat templates read (V3.2's, Qwen3's)."""


def thinking_asked(body: ChatCompletionRequest) -> bool:
    kwargs = body.chat_template_kwargs or {}
    return kwargs.get("thinking") is True or kwargs.get("enable_thinking") is True


@dataclass
class Answer:
    """One request's reasoning output as it goes: a splitter per choice, and the
    characters of reasoning and answer so far (for the token estimate)."""

    names: tuple[str, ...]
    open_at_start: bool
    splitters: dict[tuple[int, bool], ThinkSplitter] = field(default_factory=dict)
    reasoning_chars: int = 0
    answer_chars: int = 0

    def splitter(self, index: int, parsed: bool) -> ThinkSplitter:
        """The choice's splitter of its content, or of what the engine's parser took for
        reasoning (``parsed``: opened, so a leading ``<think>`` and whitespace go, as
        they do from a cut the gateway makes itself)."""
        found = self.splitters.get((index, parsed))
        if found is None:
            opened = parsed or self.open_at_start
            found = self.splitters[index, parsed] = ThinkSplitter(opened)
        return found

    def cut(self, text: str | None, index: int, parsed: bool, finished: bool) -> tuple[str, str]:
        if text is None and not finished:
            return "", ""
        splitter = self.splitter(index, parsed)
        reasoning, answer = splitter.feed(text or "")
        if finished:
            held_reasoning, held_answer = splitter.finish()
            reasoning, answer = reasoning + held_reasoning, answer + held_answer
        return reasoning, answer

    def rewrite(self, message: dict[str, Any], index: int, finished: bool, whole: bool) -> bool:
        """Cut and rename the reasoning in one message (``whole``) or delta; whether it
        changed. ``finished``: the choice's last text, so nothing may stay held back."""
        before = [message.get(name) for name in WATCHED]
        parsed = None
        for name in NAMES:  # what the engine's own parser wrote, under either name
            value = message.pop(name, None)
            if isinstance(value, str) and parsed is None:
                parsed = value
        content = message.get("content")
        text = content if isinstance(content, str) else None
        reasoning, spilled = self.cut(parsed, index, True, finished)
        cut, answer = self.cut(text, index, False, finished)
        reasoning, answer = reasoning + cut, spilled + answer
        if answer or (whole and text is not None):
            message["content"] = answer
        elif text is not None:  # a delta that was all reasoning, or held back
            del message["content"]
        if reasoning:
            for name in self.names:
                message[name] = reasoning
        self.reasoning_chars += len(reasoning)
        self.answer_chars += len(answer)
        return before != [message.get(name) for name in WATCHED]

    def count(self, usage: Any) -> bool:
        """Add ``reasoning_tokens`` to a usage object that lacks it; whether it did."""
        if not isinstance(usage, dict) or not isinstance(usage.get("completion_tokens"), int):
            return False
        details = usage.get("completion_tokens_details")
        if details is None:
            details = usage["completion_tokens_details"] = {}
        if not isinstance(details, dict) or isinstance(details.get("reasoning_tokens"), int):
            return False
        shown = self.reasoning_chars + self.answer_chars
        share = self.reasoning_chars / shown if shown else 0.0
        details["reasoning_tokens"] = round(usage["completion_tokens"] * share)
        return True


def rewrite_choices(answer: Answer, payload: dict[str, Any], key: str, whole: bool) -> bool:
    changed = False
    choices = payload.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get(key) if isinstance(choice, dict) else None
        if isinstance(message, dict):
            index = choice.get("index", 0)
            finished = whole or choice.get("finish_reason") is not None
            changed = answer.rewrite(message, index, finished, whole) or changed
    return changed


def carries_nothing(payload: dict[str, Any]) -> bool:
    """A chunk whose deltas were all held back or dropped: sending it says nothing."""
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or "usage" in payload:
        return False
    return all(
        isinstance(c, dict) and not c.get("delta") and c.get("finish_reason") is None
        for c in choices
    )


class ReasoningHook(Hook):
    def __init__(self, reasoning_field: ReasoningField = "both") -> None:
        self.names = FIELDS[reasoning_field]

    async def forward(self, ctx: RequestContext, body: ModelRequest, raw: bytes) -> bytes:
        reasoning = ctx.engine.reasoning if ctx.engine is not None else None
        if ctx.route != ROUTE or reasoning is None or not isinstance(body, ChatCompletionRequest):
            return raw
        names = self.names if body.include_reasoning else ()
        opens = reasoning.thinking == "always" or (
            reasoning.thinking == "on_request" and thinking_asked(body)
        )
        ctx.hook_state[KEY] = Answer(names, open_at_start=opens and reasoning.field is None)
        wanted = reasoning.field or ENGINE_INPUT_FIELD
        unwanted = [name for name in NAMES if name != wanted]
        if any(
            m.role == "assistant" and getattr(m, name) is not None
            for m in body.messages
            for name in unwanted
        ):
            return rename_earlier_reasoning(raw, wanted)
        return raw

    def reads_events_of(self, ctx: RequestContext) -> bool:
        return KEY in ctx.hook_state

    async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
        payload = event.payload
        if not isinstance(payload, dict):
            return event
        answer: Answer = ctx.hook_state[KEY]
        changed = rewrite_choices(answer, payload, "delta", whole=False)
        changed = answer.count(payload.get("usage")) or changed
        if not changed:
            return event
        if carries_nothing(payload):
            return None
        event.replace_payload(payload)
        return event

    async def on_answer(self, ctx: RequestContext, answer: Any) -> Any:
        if isinstance(answer, dict):
            state: Answer = ctx.hook_state[KEY]
            rewrite_choices(state, answer, "message", whole=True)
            state.count(answer.get("usage"))
        return answer


def rename_earlier_reasoning(raw: bytes, wanted: str) -> bytes:
    """The request with each assistant turn's reasoning under ``wanted`` only."""
    body = json.loads(raw)
    for message in body["messages"]:
        if message.get("role") != "assistant":
            continue
        for name in NAMES:
            if name != wanted and name in message:
                value = message.pop(name)
                if message.get(wanted) is None:
                    message[wanted] = value
    return json.dumps(body, ensure_ascii=False).encode()
