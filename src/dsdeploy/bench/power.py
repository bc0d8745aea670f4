"""The GPUs' power draw while a benchmark runs, sampled through NVML on a thread: the
figure ``dsdeploy cost`` turns into kWh, measured under the load it prices."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

SAMPLE_INTERVAL_S = 0.5


class PowerSampler:
    """Mean summed draw of every GPU that reports one; None without NVML or readings."""

    def __init__(self, nvml: Any = None, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._nvml = nvml
        self._interval = interval_s
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PowerSampler:
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError:
            return self
        self._thread = threading.Thread(target=self._run, name="gpu-power", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._nvml.nvmlShutdown()

    def _run(self) -> None:
        nvml = self._nvml
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        while True:
            self.sample(handles)
            if self._stop.wait(self._interval):
                return

    def sample(self, handles: list[Any]) -> None:
        readings = []
        for handle in handles:
            try:
                readings.append(self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000)
            except self._nvml.NVMLError:
                continue  # a GPU that does not report power adds nothing
        if readings:
            self._samples.append(sum(readings))

    @property
    def mean_w(self) -> float | None:
        return sum(self._samples) / len(self._samples) if self._samples else None
