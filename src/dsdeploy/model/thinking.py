"""Whether a model reasons before it answers, and how its chat template starts the thinking.

Read from the chat template when there is one (at pull time, with the model's other facts):
the template is rendered in the sandbox with thinking asked for and not, and the end of the
generation prompt says which kind it is. Models stored before that was recorded, or without
a template, are judged by name (DeepSeek's R1 and its distills think always; V3.1 and later
when asked).
"""

from __future__ import annotations

import re
from typing import Literal

from dsdeploy.errors import StoreError
from dsdeploy.model.chat_render import render

Thinking = Literal["always", "on_request", "model"]
"""How a reasoning model's thinking starts: ``always``, the template writes ``<think>``
into every prompt (R1's updated template), so the output holds only ``</think>``;
``on_request``, only when the request asks (V3.1+: ``chat_template_kwargs.thinking``);
``model``, the model writes ``<think>`` itself (R1's first template)."""

PROBE = [{"role": "user", "content": "What is 2 + 2?"}]
ASKED = {"thinking": True, "enable_thinking": True}
NOT_ASKED = {"thinking": False, "enable_thinking": False}
ALWAYS_BY_NAME = re.compile(r"(^|[^a-z0-9])r1([^a-z0-9]|$)|reasoner", re.IGNORECASE)
ON_REQUEST_BY_NAME = re.compile(r"deepseek[^/]*-v(3\.[1-9]|[4-9])", re.IGNORECASE)


def opens_thinking(prompt: str) -> bool:
    return prompt.rstrip().endswith("<think>")


def template_thinking(template: str) -> Thinking | None:
    """What the template does; None for a template that knows no think block."""
    if "</think>" not in template:
        return None
    try:
        asked = opens_thinking(render(template, PROBE, options=ASKED))
        unasked = opens_thinking(render(template, PROBE, options=NOT_ASKED))
    except StoreError:
        return "model"  # it names the tag; the output will show whether the model writes it
    if asked and unasked:
        return "always"
    return "on_request" if asked else "model"


def name_thinking(name: str) -> Thinking | None:
    if ALWAYS_BY_NAME.search(name):
        return "always"
    if ON_REQUEST_BY_NAME.search(name):
        return "on_request"
    return None
