"""NVML's functions as pynvml names them, answering for two GPUs: the GPU metrics' code
path is tested on machines without a GPU with this object in place of the module (the
real module is used wherever a GPU exists)."""

from __future__ import annotations

from types import SimpleNamespace


class FakeNvml(SimpleNamespace):
    """NVML's functions as pynvml names them, answering for two GPUs (no GPU here)."""

    class NVMLError(Exception):
        pass

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, *, driver: bool = True) -> None:
        super().__init__(driver=driver)

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's own names
        if not self.driver:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(used=(handle + 1) * 2**30, total=80 * 2**30, free=0)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=37, memory=12)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:  # noqa: N802
        return 61

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        if handle == 1:
            raise self.NVMLError("Not Supported")
        return 312_500  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:  # noqa: N802
        return 300_000  # milliwatts: a card capped at 300 W

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass
