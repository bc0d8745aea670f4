"""The machine a plan is for: this one (probed), or a what-if from ``--gpu/--gpus/--ram``."""

from __future__ import annotations

import re

from dsdeploy.catalog.gpus import find_gpu
from dsdeploy.errors import ConfigError
from dsdeploy.hardware import Hardware
from dsdeploy.memory_bandwidth import planning_bandwidth
from dsdeploy.planner.placement import Machine

SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64G', '64GiB', '512M' → bytes (binary units, as RAM is sold)."""
    match = SIZE.match(text)
    if match is None or float(match[1]) <= 0:
        raise ConfigError(f"cannot read size {text!r}; write it like 64G, 512M or 1.5T")
    power = " kmgt".index(match[2].lower() or " ")
    return int(float(match[1]) * 1024**power)


def machine_for(
    hardware: Hardware, *, gpu: str | None, gpus: int | None, ram: str | None
) -> Machine:
    """Probed numbers, overridden by the what-if flags; CPU bandwidth is measured here
    (once per process)."""
    if gpus is not None and gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {gpus}")
    ram_bytes = parse_size(ram) if ram else hardware.ram_available
    bandwidth = planning_bandwidth(hardware.physical_cores)
    name = gpu or (hardware.gpus[0].name if hardware.gpus else "")
    if not name:
        if gpus:
            raise ConfigError("--gpus needs --gpu NAME on a machine without NVIDIA GPUs")
        return Machine(ram_bytes, hardware.physical_cores, bandwidth)
    spec = find_gpu(name)
    memory = spec.memory if gpu else min(g.memory_free for g in hardware.gpus)
    count = gpus or (1 if gpu else len(hardware.gpus))
    return Machine(
        ram_bytes, hardware.physical_cores, bandwidth, spec.name, memory, count, spec.bandwidth
    )


def check_ctx(ctx: int | None) -> int | None:
    if ctx is not None and ctx < 128:
        raise ConfigError(f"--ctx must be at least 128 tokens, got {ctx}")
    return ctx
