"""What a benchmark result must carry to be compared later: which code, engine, model and
machine produced it, and how busy the machine was."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dsdeploy import __version__
from dsdeploy.hardware import probe

BUSY_LOAD_PER_CORE = 0.5
"""A 1-minute load average above half the cores before the run: someone else is working."""


@dataclass(frozen=True)
class Machine:
    hostname: str
    physical_cores: int
    load_average_before: tuple[float, float, float]


def git_revision() -> str:
    """The dsdeploy commit (``+dirty`` with local changes), or the version when not in git."""
    here = Path(__file__).parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"dsdeploy {__version__}"
    return f"{sha}+dirty" if dirty else sha


def machine_now() -> Machine:
    return Machine(
        hostname=platform.node(),
        physical_cores=probe().physical_cores,
        load_average_before=os.getloadavg(),
    )


def busy(load_average: tuple[float, float, float], cores: int) -> bool:
    return load_average[0] > BUSY_LOAD_PER_CORE * cores


def utc_timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
