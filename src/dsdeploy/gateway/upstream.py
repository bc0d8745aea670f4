"""What the gateway needs from whatever runs the engine (in practice, the Supervisor)."""

from __future__ import annotations

from typing import Protocol

from dsdeploy.engines.base import EngineCapabilities


class Upstream(Protocol):
    model_name: str

    @property
    def capabilities(self) -> EngineCapabilities: ...

    @property
    def base_url(self) -> str | None:
        """The engine's loopback URL, or None while it cannot take requests."""
        ...

    def unavailable_reason(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
