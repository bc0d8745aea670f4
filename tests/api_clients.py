"""Clients of the gateway that each run one chat request in a thread, so a test can do
something (stop the server, kill its engine) while they wait, then read how and when each
one ended."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx


class ChatClient:
    """One chat completion, streamed or not, posted from a thread of its own."""

    def __init__(self, base_url: str, body: dict[str, Any], timeout_s: float = 120) -> None:
        self.status: int | None = None
        self.lines: list[str] = []
        """A stream's ``data:`` payloads; a plain answer's JSON body as one line."""
        self.streamed = False
        self.first_byte = threading.Event()
        self.ended_at: float | None = None
        self.failure: httpx.HTTPError | None = None
        self.thread = threading.Thread(
            target=self.post, args=(base_url + "/v1/chat/completions", body, timeout_s)
        )
        self.thread.start()

    def post(self, url: str, body: dict[str, Any], timeout_s: float) -> None:
        try:
            with httpx.stream("POST", url, json=body, timeout=timeout_s) as response:
                self.status = response.status_code
                kind = response.headers.get("content-type", "")
                self.streamed = kind.startswith("text/event-stream")
                if self.streamed:
                    for line in response.iter_lines():
                        self.first_byte.set()
                        if line.startswith("data: "):
                            self.lines.append(line.removeprefix("data: "))
                else:
                    self.lines.append(response.read().decode())
        except httpx.HTTPError as exc:
            self.failure = exc
        finally:
            self.ended_at = time.monotonic()
            self.first_byte.set()

    def wait(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the request hung"
        assert self.failure is None, repr(self.failure)

    def last(self) -> dict[str, Any]:
        """The last event (or the body), decoded; ``{}`` for ``[DONE]``."""
        return {} if not self.lines or self.lines[-1] == "[DONE]" else json.loads(self.lines[-1])

    def error_code(self) -> str | None:
        error = self.last().get("error")
        return error.get("code") if isinstance(error, dict) else None

    def choices(self) -> list[dict[str, Any]]:
        """Every choice of every event of a stream (``[DONE]`` and errors have none)."""
        events = [json.loads(line) for line in self.lines if line != "[DONE]"]
        return [choice for event in events for choice in event.get("choices", [])]

    def text(self) -> str:
        """A stream's text, from its chunks' deltas."""
        return "".join(c.get("delta", {}).get("content") or "" for c in self.choices())

    def finished(self) -> bool:
        """The answer came whole: a stream's ``[DONE]`` after a finish reason, or a 200 body."""
        if self.status != 200 or not self.lines:
            return False
        if not self.streamed:
            return bool(self.last().get("choices"))
        reasons = [choice.get("finish_reason") for choice in self.choices()]
        return self.lines[-1] == "[DONE]" and any(reasons)
