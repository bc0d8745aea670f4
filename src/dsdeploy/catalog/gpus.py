"""GPUs people choose between, as data (``gpus.json``), for ``plan --gpu`` what-ifs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from dsdeploy.errors import ConfigError


@dataclass(frozen=True)
class GpuSpec:
    name: str
    aliases: tuple[str, ...]
    memory: int
    """Bytes (the datasheet's GB)."""
    bandwidth: float
    """Bytes per second."""
    tdp_w: int
    source: str


@cache
def gpu_specs() -> tuple[GpuSpec, ...]:
    raw = json.loads(resources.files(__package__).joinpath("gpus.json").read_text())
    return tuple(
        GpuSpec(
            name=g["name"],
            aliases=tuple(g["aliases"]),
            memory=int(g["memory_gb"] * 10**9),
            bandwidth=g["bandwidth_gbs"] * 1e9,
            tdp_w=g["tdp_w"],
            source=g["source"],
        )
        for g in raw["gpus"]
    )


def normalise(name: str) -> str:
    return "".join(name.lower().replace("nvidia", "").replace("geforce", "").split())


def find_gpu(name: str) -> GpuSpec:
    """A GPU by name or alias ("RTX 4090", "4090", "NVIDIA H100 80GB HBM3" → H100)."""
    wanted = normalise(name)
    for spec in gpu_specs():
        if wanted in {normalise(n) for n in (spec.name, *spec.aliases)}:
            return spec
    for spec in gpu_specs():  # a driver's long name, e.g. "NVIDIA H100 80GB HBM3"
        if any(normalise(n) in wanted for n in (*spec.aliases, spec.name)):
            return spec
    known = ", ".join(spec.name for spec in gpu_specs())
    raise ConfigError(f"unknown GPU {name!r}; known GPUs: {known}")
