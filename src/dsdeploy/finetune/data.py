"""The training set: OpenAI chat JSONL (``{"messages": [{"role": …, "content": …}, …]}`` a
line), every line checked before any training starts, and every bad line reported with its
number, so one run fixes the whole file instead of one line per attempt."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsdeploy.errors import DataError

ROLES = frozenset({"system", "user", "assistant"})
SHOWN_PROBLEMS = 20
"""A file with thousands of bad lines is summarised, not printed whole."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str


Conversation = tuple[Message, ...]


def message_problem(i: int, message: object) -> str | Message:
    if not isinstance(message, dict):
        return f"message {i} is not an object"
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        return f"message {i} has role {role!r}; use one of {', '.join(sorted(ROLES))}"
    if not isinstance(content, str) or not content.strip():
        return f"message {i} has no text content"
    return Message(role, content)


def line_problem(raw: str) -> str | Conversation:
    """What is wrong with one line, or the conversation it holds."""
    try:
        record: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at column {exc.colno})"
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        return 'not an object with a non-empty "messages" list'
    parsed = [message_problem(i, m) for i, m in enumerate(messages)]
    problem = next((p for p in parsed if isinstance(p, str)), None)
    if problem is not None:
        return problem
    chat = tuple(m for m in parsed if isinstance(m, Message))
    if chat[-1].role != "assistant":
        return "the last message is not the assistant's (there is nothing to learn)"
    if not any(m.role == "user" for m in chat):
        return "no user message"
    return chat


def read_conversations(path: Path) -> list[Conversation]:
    """Every conversation in ``path``; ``DataError`` naming each bad line otherwise."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"no such training file: {path}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    conversations, problems = [], []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        found = line_problem(raw)
        if isinstance(found, str):
            problems.append(f"line {number}: {found}")
        else:
            conversations.append(found)
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = len(problems) - SHOWN_PROBLEMS
        tail = f"; and {more} more" if more > 0 else ""
        raise DataError(
            f"{path}: {len(problems)} bad line(s), nothing trained — {shown}{tail}. Each line "
            'must be {"messages": [{"role": "user", "content": …}, …, {"role": "assistant", '
            '"content": …}]}'
        )
    if not conversations:
        raise DataError(f"{path} holds no conversation: add chat lines to train on")
    return conversations


def split(
    conversations: list[Conversation], validation: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """A seeded shuffle cut into training and validation (at least one of each)."""
    if len(conversations) < 2:
        raise DataError(
            "at least 2 conversations are needed: one to train on and one to validate with"
        )
    order = list(conversations)
    random.Random(seed).shuffle(order)
    held = min(len(order) - 1, max(1, round(len(order) * validation)))
    return order[held:], order[:held]
