"""The one interface every engine meets; the supervisor and gateway know nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EngineCapabilities:
    """What the gateway may route to an engine for a given model."""

    chat: bool = True
    completions: bool = True
    embeddings: bool = False


class Engine(Protocol):
    """An inference server run as a child process on a private loopback port."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> EngineCapabilities: ...

    @property
    def health_path(self) -> str:
        """GET path that answers 200 once the model is loaded and requests can be served."""
        ...

    def argv(self, port: int) -> list[str]:
        """The command line that serves the model on 127.0.0.1:``port``."""
        ...
