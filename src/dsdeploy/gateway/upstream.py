"""What the gateway needs from whatever runs the engine (in practice, the Supervisor)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from dsdeploy.engines.base import EngineCapabilities


class Upstream(Protocol):
    model_name: str

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

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
