"""A reply that writes the request's last message back (``--echo``), as a reasoning model
behind an engine would write it: cut into tokens of a few characters, and, with
``--reasoning-field``, with its ``<think>…</think>`` cut out as an engine's own parser does
(llama-server's writes ``reasoning_content``, vLLM's ``reasoning``). This parser is naive
(it knows the whole reply in advance); the gateway's splitter is what the tests check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.stub_server.generation import content_text
from tests.stub_server.state import Behaviour

OPEN, CLOSE = "<think>", "</think>"


def labels(text: str) -> str:
    """One letter per character: ``r`` reasoning, ``c`` content, ``t`` a tag (dropped;
    whitespace around tags is kept, as llama-server's parser keeps it). The think block is
    open from the start (the template wrote ``<think>``) unless the text opens it itself."""
    stripped = text.lstrip()
    start = len(text) - len(stripped) + len(OPEN) if stripped.startswith(OPEN) else 0
    close = text.find(CLOSE, start)
    if close < 0:
        return "t" * start + "r" * (len(text) - start)
    after = close + len(CLOSE)
    return "t" * start + "r" * (close - start) + "t" * len(CLOSE) + "c" * (len(text) - after)


@dataclass(frozen=True)
class Script:
    text: str
    piece_chars: int
    field: str | None

    @classmethod
    def of(cls, behaviour: Behaviour, body: dict[str, Any]) -> Script | None:
        messages = body.get("messages")
        if not behaviour.echo or not isinstance(messages, list) or not messages:
            return None
        text = content_text(messages[-1].get("content"))
        return cls(text, behaviour.piece_chars, behaviour.reasoning_field)

    @property
    def tokens(self) -> int:
        return -(-len(self.text) // self.piece_chars)

    def span(self, first: int, end: int) -> tuple[int, int]:
        """Characters of tokens ``first`` to ``end`` (excluded)."""
        return first * self.piece_chars, min(end * self.piece_chars, len(self.text))

    def message(self, first: int, end: int) -> dict[str, str]:
        """The fields a message (or delta) of these tokens carries."""
        start, stop = self.span(first, end)
        if self.field is None:
            return {"content": self.text[start:stop]}
        marks = labels(self.text)[start:stop]
        chunk = self.text[start:stop]
        reasoning = "".join(ch for ch, mark in zip(chunk, marks, strict=True) if mark == "r")
        content = "".join(ch for ch, mark in zip(chunk, marks, strict=True) if mark == "c")
        fields = {self.field: reasoning} if reasoning else {}
        return fields | ({"content": content} if content else {})
