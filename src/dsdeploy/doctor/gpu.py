"""The NVIDIA driver (through NVML) against the CUDA runtime torch was built for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from dsdeploy.doctor.elf_versions import version_key
from dsdeploy.doctor.finding import Finding, ok
from dsdeploy.hardware import Gpu


@dataclass(frozen=True)
class DriverInfo:
    gpus: tuple[Gpu, ...]
    driver: str
    cuda: str
    """The newest CUDA version the driver supports, e.g. '12.4'."""
    error: str = ""


def driver_minimums() -> dict[int, str]:
    """CUDA major version → minimum driver, from NVIDIA's compatibility table (data file)."""
    text = resources.files("dsdeploy.doctor").joinpath("cuda_drivers.json").read_text()
    return {e["cuda_major"]: e["driver_minimum"] for e in json.loads(text)["cuda_driver_minimum"]}


def check_driver(info: DriverInfo) -> list[Finding]:
    if not info.gpus:
        reason = f" (NVML: {info.error})" if info.error else ""
        return [ok("gpu", f"no NVIDIA GPU{reason}: engines run on the CPU")]
    names = ", ".join(sorted({g.name for g in info.gpus}))
    return [
        ok("gpu", f"{len(info.gpus)} × {names}; driver {info.driver}, supports CUDA {info.cuda}")
    ]


def check_torch_cuda(info: DriverInfo, torch_cuda: str | None, torch_version: str) -> list[Finding]:
    """A torch wheel built for a newer CUDA than the driver supports fails at the first
    kernel ("CUDA driver version is insufficient"), unless minor-version compatibility
    covers it (same major version, driver at or above that major's minimum)."""
    check = "torch-cuda"
    if not info.gpus:
        return [ok(check, f"torch {torch_version} (CUDA {torch_cuda or 'none'}); no GPU to use")]
    if torch_cuda is None:
        return [
            Finding(
                check,
                "warn",
                f"torch {torch_version} is a CPU-only build, so it cannot use the GPUs",
                "pip install torch --index-url https://download.pytorch.org/whl/cu"
                + info.cuda.replace(".", ""),
            )
        ]
    if version_key(torch_cuda)[:2] <= version_key(info.cuda)[:2]:
        return [
            ok(
                check,
                f"torch {torch_version} built for CUDA {torch_cuda}; the driver "
                f"supports {info.cuda}",
            )
        ]
    major = version_key(torch_cuda)[0]
    minimum = driver_minimums().get(major)
    same_major = version_key(info.cuda)[0] == major
    if same_major and minimum and version_key(info.driver) >= version_key(minimum):
        return [
            ok(
                check,
                f"torch built for CUDA {torch_cuda} runs on driver {info.driver} "
                f"through minor-version compatibility (CUDA {major}.x needs ≥ {minimum})",
            )
        ]
    need = f"driver ≥ {minimum}" if minimum else f"a driver that supports CUDA {torch_cuda}"
    return [
        Finding(
            check,
            "fail",
            f"torch {torch_version} is built for CUDA {torch_cuda}, but driver {info.driver} "
            f"supports CUDA {info.cuda} at most (CUDA {major}.x needs {need})",
            f"upgrade the NVIDIA driver to {need.removeprefix('driver ')}, or install torch "
            "for the driver's CUDA: pip install torch --index-url "
            f"https://download.pytorch.org/whl/cu{info.cuda.replace('.', '')}",
        )
    ]
