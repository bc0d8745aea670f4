"""The hardware probe: CPU flags from /proc/cpuinfo, NVIDIA GPUs through NVML's answers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dsdeploy.catalog.gpus import find_gpu
from dsdeploy.hardware import cpu_model_and_flags, gpus_from_nvml, probe
from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"


class RecordedNvml:
    """Replays NVML answers recorded on a GPU machine, with pynvml's call signatures."""

    def __init__(self, recording: dict[str, Any]) -> None:
        self.recording = recording

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - pynvml's names
        return len(self.recording["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:  # noqa: N802
        return dict(self.recording["devices"][index])

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(total=handle["total"], free=handle["free"], used=0)

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str:  # noqa: N802
        return str(handle["name"])

    def nvmlDeviceGetCudaComputeCapability(self, handle: dict[str, Any]) -> tuple[int, int]:  # noqa: N802
        return tuple(handle["cc"])  # type: ignore[return-value]

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return str(self.recording["driver_version"])

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        return int(self.recording["cuda_driver_version"])


def test_nvml_answers_become_gpus_with_memory_capability_and_versions() -> None:
    recording = json.loads((FIXTURES / "nvml_8x_h100.json").read_text())
    gpus, driver, cuda = gpus_from_nvml(RecordedNvml(recording))
    assert len(gpus) == 8
    assert gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert gpus[0].memory_total == 85520809984
    assert gpus[7].memory_free == 70125604096
    assert gpus[0].compute_capability == (9, 0)
    assert (driver, cuda) == ("550.54.15", "12.4")
    assert find_gpu(gpus[0].name).name == "H100 SXM"


def test_cpu_flags_keep_only_what_the_kernels_use() -> None:
    cpuinfo = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512_bf16 amx_tile amx_int8\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    )
    model, flags = cpu_model_and_flags(cpuinfo)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == ("avx2", "avx512f", "avx512_bf16", "amx_tile", "fma", "f16c")


def test_probe_reads_disk_at_a_missing_data_dir_and_says_why_no_gpu(tmp_path: Path) -> None:
    hardware = probe(tmp_path / "not" / "yet")
    assert hardware.ram_total > hardware.ram_available > 0
    assert hardware.disk_free > 0
    assert hardware.gpus or hardware.nvml_error


def test_hw_command_prints_cpu_ram_and_the_missing_gpu(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "hw")
    assert done.returncode == 0, done.stderr
    assert "RAM" in done.stdout
    assert "no NVIDIA GPU" in done.stdout
