"""Cutting a reasoning model's text into its thinking and its answer, as it streams.

DeepSeek's reasoning models write ``<think>reasoning</think>answer``. R1's updated chat
template (and V3.1+ in thinking mode) writes ``<think>`` into the prompt, so the output has
only the closing tag; a model may still open with ``<think>`` itself. Only one think block
is read, at the start: a ``<think>`` later in the answer is answer text. As llama-server's
parser does, neither part starts with whitespace (the newlines a model writes after a tag
are the tag's); the reasoning keeps what it has before ``</think>``.

A chunk may end inside a tag (``</thi``), or at the start of a part with only whitespace so
far: only that is held back, and released as soon as the next chunk shows what it is, or
at the end.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


def partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``tag``. A tag
    has one ``<``, its first character, so only the last ``<`` near the end can start one."""
    at = text.rfind("<", max(0, len(text) - len(tag) + 1))
    return len(text) - at if at >= 0 and tag.startswith(text[at:]) else 0


class ThinkSplitter:
    """One choice's text in, ``(reasoning, answer)`` pieces out.

    ``open_at_start``: the prompt opened the think block, so the text is reasoning until
    ``</think>`` (a model cut off before it wrote the tag gave only reasoning). Otherwise
    the text is reasoning only if it starts with ``<think>`` (after whitespace)."""

    def __init__(self, open_at_start: bool) -> None:
        self._open_at_start = open_at_start
        self._state = "start"
        self._held = ""

    def feed(self, text: str) -> tuple[str, str]:
        buffer, self._held = self._held + text, ""
        reasoning = answer = ""
        while buffer:
            if self._state == "start":
                stripped = buffer.lstrip()
                if stripped.startswith(OPEN):
                    self._state, buffer = "reasoning_start", stripped[len(OPEN) :]
                elif OPEN.startswith(stripped):  # whitespace, or a tag still arriving
                    self._held, buffer = buffer, ""
                else:
                    self._state = "reasoning" if self._open_at_start else "answer"
                    buffer = stripped
            elif self._state in ("reasoning_start", "answer_start"):
                buffer = buffer.lstrip()
                if buffer:
                    self._state = self._state.removesuffix("_start")
            elif self._state == "reasoning":
                before, found, after = buffer.partition(CLOSE)
                if found:
                    reasoning += before
                    self._state, buffer = "answer_start", after
                else:
                    keep = partial_tag(buffer, CLOSE)
                    reasoning += buffer[: len(buffer) - keep]
                    self._held, buffer = buffer[len(buffer) - keep :], ""
            else:
                answer, buffer = answer + buffer, ""
        return reasoning, answer

    def finish(self) -> tuple[str, str]:
        """What was held back, once the text has ended: a tag that never completed is text."""
        held, self._held = self._held.lstrip() if self._state == "start" else self._held, ""
        if self._state == "reasoning" or (self._state == "start" and self._open_at_start):
            return held, ""
        return "", held


def split_text(text: str, open_at_start: bool) -> tuple[str, str]:
    """A whole answer's ``(reasoning, answer)``, cut as a stream of it would be."""
    splitter = ThinkSplitter(open_at_start)
    reasoning, answer = splitter.feed(text)
    rest_reasoning, rest_answer = splitter.finish()
    return reasoning + rest_reasoning, answer + rest_answer
