"""What the machine draws while it serves: the user's figure, the GPU draw a bench run
measured, this machine's NVML power limit, or the datasheet's board power for a what-if."""

from __future__ import annotations

from typing import Any

from dsdeploy.errors import ConfigError


def nvml_power_limit_w(nvml: Any) -> float | None:
    """The summed enforced power limits of this machine's GPUs (what they may draw under
    load as configured here — a card capped at 300 W counts 300 W); None without NVML.
    The instantaneous draw is not used: read at rest it makes a GPU look nearly free."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return None
    try:
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        limits = [nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000 for h in handles]
    except nvml.NVMLError:
        return None
    finally:
        nvml.nvmlShutdown()
    return sum(limits) or None


def power_draw(
    given: float | None,
    bench_w: float | None,
    what_if_tdp: tuple[str, int, int] | None,
) -> tuple[float, str]:
    """Watts and where they came from, the first that applies: ``--power-w``, the bench
    run's measured GPU draw, the datasheet TDP × count of a what-if GPU, NVML's limits."""
    if given is not None:
        if given <= 0:
            raise ConfigError(f"--power-w must be above 0 watts, got {given}")
        return given, f"power {given:g} W as given"
    if bench_w:
        return bench_w, f"power {bench_w:.0f} W: GPU draw measured during the bench run"
    if what_if_tdp is not None:
        name, tdp, count = what_if_tdp
        return tdp * count, f"power {tdp * count} W: datasheet board power of {count} × {name}"
    import pynvml

    limit = nvml_power_limit_w(pynvml)
    if limit is None:
        raise ConfigError(
            "no NVIDIA GPU reports its power here: give the machine's draw under load with "
            "--power-w WATTS"
        )
    return limit, f"power {limit:.0f} W: the GPUs' power limit as NVML reports it"
