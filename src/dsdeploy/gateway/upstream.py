"""What the gateway needs from whatever runs the engines (in practice, the runtime's pool).

The gateway never starts or stops an engine itself: for each request it leases the upstream
that serves the request's model for as long as the request lasts. A lease may wait while the
model loads (on-demand loading), and while any lease is held the engine is neither evicted
nor stopped, and a blue-green swap drains it before stopping it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from dsdeploy.engines.base import EngineCapabilities, EngineFailure


class Upstream(Protocol):
    """One running engine as a request sees it; the pool, not the gateway, starts and
    stops it."""

    @property
    def capabilities(self) -> EngineCapabilities: ...

    @property
    def socket_path(self) -> Path:
        """The engine's Unix socket; the same for the upstream's whole life once started."""
        ...

    @property
    def ready(self) -> bool:
        """Whether the engine takes requests now."""
        ...

    def unavailable_reason(self) -> str: ...

    def translate_error(self, status: int, payload: bytes) -> EngineFailure | None:
        """The engine's non-200 answer in API terms (its adapter knows its error shapes)."""
        ...


class UpstreamPool(Protocol):
    """Every model the gateway serves, each loaded on demand behind a lease.

    ``lease`` raises ``dsdeploy.errors.ModelNotFound`` for a model the pool does not serve
    (the gateway answers 404) and ``dsdeploy.errors.EngineUnavailable`` when the model's
    engine cannot take the request now: still loading past the wait bound, restarting,
    or no memory left to load it (503, with the error's client-safe message)."""

    def model_names(self) -> list[str]:
        """Every servable model, loaded or not, in a stable order."""
        ...

    def lease(self, model: str) -> AbstractAsyncContextManager[Upstream]:
        """The model's running upstream, held (counted in flight) until the block exits."""
        ...

    def running(self) -> Mapping[str, Upstream]:
        """Each loaded model's upstream, ready or not (for scraping the engine's metrics)."""
        ...

    def status(self) -> list[dict[str, object]]:
        """Each model's state, planned and measured memory, slots, requests in flight and
        idle time (JSON-ready), for operators (`dsdeploy ps`)."""
        ...

    def health(self) -> tuple[bool, str]:
        """Whether the gateway can serve at all, and why not (client-safe text)."""
        ...

    async def start(self) -> None:
        """Start what must run from the beginning (preloaded and pinned models)."""
        ...

    async def stop(self) -> None:
        """Stop every engine; in-flight requests get a 503 from then on."""
        ...
