"""Stopping without dropping answers: the drain a stop signal begins, and its cut.

The first SIGTERM or SIGINT begins the drain: readiness answers 503 at once, a new API
request is answered 503, uvicorn stops accepting connections and waits for every answer
in flight — streams included — to end. ``timeout_s`` after the signal, or at a second
signal, the drain is *cut*: a stream still open gets one error event in its API's shape and
ends, a request still waiting for its engine gets a 503, and the server goes on stopping.

uvicorn's own bound (``timeout_graceful_shutdown``) stays as a backstop a little after the
cut: it cancels what is left without a word to the client (a stream is closed mid-way).
"""

from __future__ import annotations

import asyncio
import logging
import time

from dsdeploy.gateway.errors import ApiError

log = logging.getLogger("dsdeploy.gateway")


def shutting_down() -> ApiError:
    """What a request the drain refuses or cuts is told (OpenAI 503, Anthropic 529)."""
    return ApiError(503, "the server is shutting down; retry the request", code="shutting_down")


CUT_GRACE_S = 1.0
"""How long after the cut uvicorn's backstop waits: ended answers need milliseconds."""


class Drain:
    """One server's drain: when it began, and the cut every answer in flight watches."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.began: float | None = None
        """``time.monotonic()`` of the stop signal; None while serving."""
        self._cut: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def draining(self) -> bool:
        return self.began is not None

    def begin(self) -> None:
        """Note that a stop was asked; safe in a signal handler (it only notes the time)."""
        if self.began is None:
            self.began = time.monotonic()

    def arm(self) -> None:
        """Schedule the cut ``timeout_s`` after the signal (in the event loop, once the
        server has stopped accepting)."""
        self.begin()
        if self._timer is None and self.began is not None:
            delay = self.began + self.timeout_s - time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self.cut)

    def cut(self) -> None:
        """End what is still in flight now (in the event loop)."""
        self.begin()
        cutoff = self.cutoff()
        if not cutoff.done():
            log.warning("stopping: ending the answers still in flight")
            cutoff.set_result(None)

    def cutoff(self) -> asyncio.Future[None]:
        """Done once the drain is cut; made on first use, in the server's event loop."""
        if self._cut is None:
            self._cut = asyncio.get_running_loop().create_future()
        return self._cut
