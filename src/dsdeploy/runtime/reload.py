"""What a reload of a served model did, as the pool reports it and the operator reads it
(server log, ``POST /reload`` on the control socket, ``dsdeploy reload``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

ReloadMode = Literal["blue-green", "stop-start", "not loaded", "refused"]


@dataclass(frozen=True)
class ReloadOutcome:
    """What one model's reload did: ``blue-green`` (new engine beside the old, no gap),
    ``stop-start`` (the budget held one engine only: ``gap_s`` without one), ``not
    loaded`` (only the spec was replaced) or ``refused`` (nothing was started)."""

    model: str
    mode: ReloadMode
    seconds: float
    """The whole reload, the old engine's drain included."""
    gap_s: float = 0.0
    serving_s: float = 0.0
    """From the start until the new engine took requests."""
    error: str = ""

    def summary(self) -> str:
        """One line for the operator, in the server's log and from `dsdeploy reload`."""
        gap = f", {self.gap_s:.1f} s without an engine" if self.mode == "stop-start" else ""
        if self.error:
            return f"{self.model}: reload failed ({self.mode}{gap}): {self.error}"
        if self.mode == "not loaded":
            return f"{self.model}: not loaded; its next load uses the new spec"
        return (
            f"{self.model}: {self.mode} reload in {self.seconds:.1f} s (new engine serving "
            f"after {self.serving_s:.1f} s{gap})"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
