"""What this machine has, as far as choosing engine flags needs it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Hardware:
    physical_cores: int
    logical_cores: int
    ram_total: int
    ram_available: int


def probe() -> Hardware:
    memory = psutil.virtual_memory()
    logical = os.cpu_count() or 1
    return Hardware(
        physical_cores=psutil.cpu_count(logical=False) or logical,
        logical_cores=logical,
        ram_total=memory.total,
        ram_available=memory.available,
    )
