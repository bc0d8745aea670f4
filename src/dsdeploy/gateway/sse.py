"""Server-sent events as the engine writes them, for hooks that read or change a stream.

Only used when a hook wants events: otherwise the gateway relays the engine's bytes as they
come, without looking at them. An event is cut into its ``event`` name and ``data`` text;
its JSON is decoded only when someone asks for ``payload``, and an event nothing changed
is sent on as the engine's own bytes. A changed event is written with its ``event`` and
``data`` fields only (the engines send no ``id`` or ``retry``).
"""

from __future__ import annotations

import json
from typing import Any

NOT_PARSED = object()


class SseEvent:
    def __init__(self, data: str, event: str | None = None, raw: bytes | None = None) -> None:
        self._data = data
        self._event = event
        self._raw = raw
        """The engine's bytes for this event, until something changes it."""
        self._payload: Any = NOT_PARSED

    @property
    def event(self) -> str | None:
        return self._event

    @event.setter
    def event(self, name: str | None) -> None:
        self._event, self._raw = name, None

    @property
    def data(self) -> str:
        return self._data

    @data.setter
    def data(self, text: str) -> None:
        self._data, self._raw, self._payload = text, None, NOT_PARSED

    @property
    def payload(self) -> Any:
        """The data as JSON, or None when it is not JSON (OpenAI's ``[DONE]``)."""
        if self._payload is NOT_PARSED:
            try:
                self._payload = json.loads(self._data)
            except ValueError:
                self._payload = None
        return self._payload

    def replace_payload(self, payload: Any) -> None:
        """Change what the client receives for this event."""
        self.data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        self._payload = payload

    def encode(self) -> bytes:
        if self._raw is not None:
            return self._raw
        lines = [f"event: {self._event}"] if self._event is not None else []
        lines += [f"data: {line}" for line in self._data.split("\n")]
        return ("\n".join(lines) + "\n\n").encode()

    def __repr__(self) -> str:
        return f"SseEvent(data={self._data!r}, event={self._event!r})"


def parse_block(block: bytes) -> SseEvent | None:
    name: str | None = None
    data: list[str] = []
    for line in block.decode(errors="replace").split("\n"):
        field_name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field_name == "event":
            name = value
        elif field_name == "data":
            data.append(value)
    if not data and name is None:
        return None
    return SseEvent("\n".join(data), name, block + b"\n\n")


class SseParser:
    """Cuts a byte stream into events; an event may arrive split across chunks."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._pending + chunk.replace(b"\r\n", b"\n")
        *blocks, self._pending = text.split(b"\n\n")
        events = (parse_block(block) for block in blocks)
        return [event for event in events if event is not None]

    def rest(self) -> SseEvent | None:
        """An unterminated last event, if the stream ended inside one."""
        pending, self._pending = self._pending, b""
        return parse_block(pending) if pending.strip() else None
