"""What this machine has, as far as planning and engine flags need it: CPU, memory, disk
and NVIDIA GPUs (through NVML, the library ``nvidia-smi`` itself uses)."""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from dsdeploy.cpu_isa import decide, read_cpu_answers

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "fma", "f16c")
"""CPU features llama.cpp's kernels use (AMX for int8/bf16 matmuls on Sapphire Rapids+)."""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_total: int
    memory_free: int
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class Hardware:
    physical_cores: int
    logical_cores: int
    ram_total: int
    ram_available: int
    cpu_model: str = ""
    isa_flags: tuple[str, ...] = ()
    swap_total: int = 0
    disk_free: int = 0
    gpus: tuple[Gpu, ...] = ()
    driver_version: str = ""
    cuda_version: str = ""
    isa_left_out: tuple[str, ...] = ()
    """Extensions the CPU lists but the OS does not let a process use, each with its reason."""
    nvml_error: str = field(default="", compare=False)
    """Why no GPU was read (no driver, no NVML library), for ``dsdeploy hw``."""


def cpu_model_and_flags(cpuinfo: str) -> tuple[str, tuple[str, ...]]:
    """Model name and the ISA flags planning cares about, from /proc/cpuinfo's text."""
    model, flags = "", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model or platform.processor(), tuple(f for f in ISA_FLAGS if f in flags)


def gpus_from_nvml(nvml: Any) -> tuple[tuple[Gpu, ...], str, str]:
    """GPUs, driver version and CUDA version from an initialised ``pynvml`` module."""
    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        name = nvml.nvmlDeviceGetName(handle)
        gpus.append(
            Gpu(
                index=index,
                name=name.decode() if isinstance(name, bytes) else str(name),
                memory_total=int(memory.total),
                memory_free=int(memory.free),
                compute_capability=tuple(nvml.nvmlDeviceGetCudaComputeCapability(handle)),
            )
        )
    driver = nvml.nvmlSystemGetDriverVersion()
    cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
    driver_text = driver.decode() if isinstance(driver, bytes) else str(driver)
    return tuple(gpus), driver_text, f"{cuda // 1000}.{cuda % 1000 // 10}"


def probe_gpus() -> tuple[tuple[Gpu, ...], str, str, str]:
    """NVIDIA GPUs, or none with the reason (no NVML library means no NVIDIA driver)."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return (), "", "", str(exc)
    try:
        gpus, driver, cuda = gpus_from_nvml(pynvml)
    finally:
        pynvml.nvmlShutdown()
    return gpus, driver, cuda, ""


def probe(data_dir: Path | None = None) -> Hardware:
    memory = psutil.virtual_memory()
    logical = os.cpu_count() or 1
    cpuinfo = Path("/proc/cpuinfo")
    model, flags = cpu_model_and_flags(cpuinfo.read_text() if cpuinfo.exists() else "")
    disk = existing_parent(data_dir) if data_dir else None
    gpus, driver, cuda, nvml_error = probe_gpus()
    return Hardware(
        physical_cores=psutil.cpu_count(logical=False) or logical,
        logical_cores=logical,
        ram_total=memory.total,
        ram_available=memory.available,
        cpu_model=model,
        isa_flags=flags,
        isa_left_out=decide(read_cpu_answers()).reasons,
        swap_total=psutil.swap_memory().total,
        disk_free=shutil.disk_usage(disk).free if disk else 0,
        gpus=gpus,
        driver_version=driver,
        cuda_version=cuda,
        nvml_error=nvml_error,
    )


def existing_parent(path: Path) -> Path:
    """The data dir may not exist yet; its nearest existing parent has the same disk."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
