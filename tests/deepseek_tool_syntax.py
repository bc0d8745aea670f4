"""DeepSeek's tool-call syntaxes, written as each model writes them (from the real chat
templates in llama.cpp's ``models/templates/`` and its ``tests/test-chat.cpp``), so tests
can put an exact model output in front of the engine's parser.

- V3, R1 and R1-0528 (and the R1 distills): ``function<｜tool▁sep｜>NAME`` and the
  arguments in a fenced JSON block, calls on separate lines.
- V3.1: ``NAME<｜tool▁sep｜>ARGUMENTS``, calls back to back.
- V3.2 (``function_calls``) and V4 (``tool_calls``): DSML, one ``invoke`` per call, one
  ``parameter`` per argument, ``string="true"`` for strings, JSON for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

Call = tuple[str, dict[str, Any]]
Syntax = Callable[[Sequence[Call]], str]


def compact(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, separators=(",", ":"))


def v3(calls: Sequence[Call]) -> str:
    body = "\n".join(
        f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{compact(arguments)}\n```"
        "<｜tool▁call▁end｜>"
        for name, arguments in calls
    )
    return f"<｜tool▁calls▁begin｜>{body}<｜tool▁calls▁end｜>"


def v3_1(calls: Sequence[Call]) -> str:
    body = "".join(
        f"<｜tool▁call▁begin｜>{name}<｜tool▁sep｜>{compact(arguments)}<｜tool▁call▁end｜>"
        for name, arguments in calls
    )
    return f"<｜tool▁calls▁begin｜>{body}<｜tool▁calls▁end｜>"


def dsml(block: str) -> Syntax:
    def write(calls: Sequence[Call]) -> str:
        lines = [f"<｜DSML｜{block}>"]
        for name, arguments in calls:
            lines.append(f'<｜DSML｜invoke name="{name}">')
            for key, value in arguments.items():
                text, is_string = (
                    (value, "true")
                    if isinstance(value, str)
                    else (
                        json.dumps(value),
                        "false",
                    )
                )
                lines.append(
                    f'<｜DSML｜parameter name="{key}" string="{is_string}">{text}'
                    "</｜DSML｜parameter>"
                )
            lines.append("</｜DSML｜invoke>")
        lines.append(f"</｜DSML｜{block}>")
        return "\n".join(lines)

    return write


v3_2 = dsml("function_calls")
v4 = dsml("tool_calls")
