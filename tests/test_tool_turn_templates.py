"""What each real DeepSeek template does with an earlier call's reasoning in a tool turn.

DeepSeek's API wants the reasoning of the turn that called a tool passed back; whether the
model then sees it is the template's rule, and the gateway only renames it to the field the
templates read. Rendered in dsdeploy's sandbox, with thinking on and off."""

from __future__ import annotations

import pytest

from dsdeploy.model.chat_render import render
from tests.templated_engine import template_path

EARLIER = "I should look the weather up."
TOOL_TURN = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": EARLIER,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


@pytest.mark.parametrize(
    ("template", "kept_when_thinking"),
    [
        ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", False),
        ("deepseek-ai-DeepSeek-V3.1.jinja", False),
        ("deepseek-ai-DeepSeek-V3.2.jinja", True),
        ("deepseek-ai-DeepSeek-V4.jinja", True),
        ("deepseek-ai-DeepSeek-V4-Flash-0731.jinja", True),
    ],
)
def test_earlier_reasoning_reaches_the_model_only_where_the_template_keeps_it(
    template: str, kept_when_thinking: bool
) -> None:
    text = template_path(template).read_text()
    for thinking, expected in ((True, kept_when_thinking), (False, False)):
        prompt = render(
            text, TOOL_TURN, options={"thinking": thinking, "enable_thinking": thinking}
        )
        assert (EARLIER in prompt) is expected, (template, thinking)
        assert "sunny" in prompt
