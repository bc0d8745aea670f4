"""Server-sent events as the engine writes them, for hooks that read or change a stream.

Only used when a hook wants events: otherwise the gateway relays the engine's bytes as they
come, without looking at them. An event is parsed into its ``event`` name and ``data``
text; its JSON is decoded only when a hook asks for ``payload``. Comments, ``id`` and
``retry`` fields are dropped (the engines send none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

NOT_JSON = object()


@dataclass
class SseEvent:
    data: str
    event: str | None = None
    _payload: Any = field(default=NOT_JSON, repr=False, compare=False)

    @property
    def payload(self) -> Any:
        """The data as JSON, or None when it is not JSON (OpenAI's ``[DONE]``)."""
        if self._payload is NOT_JSON:
            try:
                self._payload = json.loads(self.data)
            except ValueError:
                self._payload = None
        return self._payload

    def replace_payload(self, payload: Any) -> None:
        """Change what the client receives for this event."""
        self._payload = payload
        self.data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    def encode(self) -> bytes:
        lines = [f"event: {self.event}"] if self.event is not None else []
        lines += [f"data: {line}" for line in self.data.split("\n")]
        return ("\n".join(lines) + "\n\n").encode()


def parse_block(block: str) -> SseEvent | None:
    name: str | None = None
    data: list[str] = []
    for line in block.split("\n"):
        field_name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field_name == "event":
            name = value
        elif field_name == "data":
            data.append(value)
    return SseEvent("\n".join(data), name) if data or name else None


class SseParser:
    """Cuts a byte stream into events; an event may arrive split across chunks."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._pending + chunk.replace(b"\r\n", b"\n")
        *blocks, self._pending = text.split(b"\n\n")
        events = (parse_block(block.decode(errors="replace")) for block in blocks)
        return [event for event in events if event is not None]

    def rest(self) -> SseEvent | None:
        """An unterminated last event, if the stream ended inside one."""
        pending, self._pending = self._pending, b""
        return parse_block(pending.decode(errors="replace")) if pending.strip() else None
