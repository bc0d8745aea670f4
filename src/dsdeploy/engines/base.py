"""The one interface every engine meets; the supervisor and gateway know nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class EngineCapabilities:
    """What the gateway may route to an engine for a given model."""

    chat: bool = True
    completions: bool = True
    embeddings: bool = False


class Engine(Protocol):
    """An inference server run as a child process, listening on a Unix socket in a folder
    only this user can open: other local users cannot reach it around the gateway."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> EngineCapabilities: ...

    @property
    def health_path(self) -> str:
        """GET path that answers 200 once the model is loaded and requests can be served."""
        ...

    def argv(self, socket_path: Path) -> list[str]:
        """The command line that serves the model on the Unix socket ``socket_path``."""
        ...

    def explain_failure(self, log_tail: list[str]) -> str:
        """What to do about a start that failed, judged from the end of the engine's log."""
        ...
