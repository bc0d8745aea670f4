"""What a check reports: one finding, its status, and the fix to run when it is not ok."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["ok", "warn", "fail"]
SEVERITY: dict[Status, int] = {"ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Repair:
    """A fix safe to apply without asking: it only touches dsdeploy's own files."""

    action: Literal["chmod", "mkdir"]
    path: Path
    mode: int = 0o700

    def apply(self) -> str:
        if self.action == "mkdir":
            self.path.mkdir(mode=self.mode, parents=True, exist_ok=True)
            return f"created {self.path}"
        os.chmod(self.path, self.mode)
        return f"chmod {self.mode:o} {self.path}"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    found: str
    """What was found, in one sentence."""
    fix: str | None = None
    """The exact command or step that clears it; None when the finding is ok."""
    repair: Repair | None = None
    """Set when ``--fix`` may apply the fix itself."""

    def as_dict(self) -> dict[str, str | None]:
        return {"check": self.check, "status": self.status, "found": self.found, "fix": self.fix}


def ok(check: str, found: str) -> Finding:
    return Finding(check, "ok", found)


def exit_code(findings: list[Finding]) -> int:
    """0 all ok, 1 a warning, 2 a failure: the worst finding decides."""
    return max((SEVERITY[f.status] for f in findings), default=0)


def guarded(check: str, run: Callable[[], list[Finding]]) -> list[Finding]:
    """A check that breaks must not take the command down: its exception becomes a warning
    that names the check, so the other checks still report."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - any failure of a check is reported, not raised
        return [
            Finding(
                check,
                "warn",
                f"the {check} check itself failed: {type(exc).__name__}: {exc}",
                "report this as a dsdeploy bug, with the output of `dsdeploy doctor --json`",
            )
        ]
