"""Watching a running ``dsdeploy serve`` from outside during a soak: the resident memory of
the gateway and of each engine it started (its children, found by psutil; an engine is
named by its ``--alias``, the model it serves), and the plot of a finished soak."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from dsdeploy.bench.soak_stats import MIB, Window, second_half, slope_per_hour

GATEWAY = "gateway"


@dataclass
class Series:
    """One process's resident memory over the run."""

    name: str
    pid: int
    times_s: list[float] = field(default_factory=list)
    rss_bytes: list[float] = field(default_factory=list)

    def row(self, end_s: float) -> dict[str, object]:
        """What the report shows: first, last and highest RSS, and the growth per hour over
        the run's second half (None when the process lived too little of it)."""
        times, values = second_half(self.times_s, [v / MIB for v in self.rss_bytes], end_s)
        return {
            "process": self.name,
            "pid": self.pid,
            "samples": len(self.times_s),
            "lived_s": round(self.times_s[-1] - self.times_s[0], 1),
            "first_mib": round(self.rss_bytes[0] / MIB, 1),
            "last_mib": round(self.rss_bytes[-1] / MIB, 1),
            "max_mib": round(max(self.rss_bytes) / MIB, 1),
            "slope_mib_per_hour": slope_per_hour(times, values),
        }


def engine_name(process: psutil.Process) -> str | None:
    """The model an engine process serves; None for any other process."""
    if "llama-server" not in process.name():
        return None
    argv = process.cmdline()
    return argv[argv.index("--alias") + 1] if "--alias" in argv else "engine"


class MemoryWatch:
    """Samples the RSS of ``serve`` (the gateway) and of every engine below it."""

    def __init__(self, serve_pid: int) -> None:
        self.serve = psutil.Process(serve_pid)
        self.series: dict[int, Series] = {}

    def sample(self, at_s: float) -> dict[str, float]:
        """Records one sample of each process; the RSS in MiB by process name."""
        found = {}
        for process in [self.serve, *self.serve.children(recursive=True)]:
            try:
                name = GATEWAY if process.pid == self.serve.pid else engine_name(process)
                if name is None:
                    continue
                rss = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue  # an engine stopping between the listing and the reading
            series = self.series.setdefault(process.pid, Series(name, process.pid))
            series.times_s.append(at_s)
            series.rss_bytes.append(rss)
            found[f"{name} ({process.pid})" if name != GATEWAY else name] = rss / MIB
        return found

    def rows(self, end_s: float) -> list[dict[str, object]]:
        return [series.row(end_s) for series in self.series.values()]


def plot(series: Sequence[Series], found: Sequence[Window], title: str, path: Path) -> None:
    """RSS over time per process, and p50/p99 latency per window."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (memory, latency) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for one in series:
        minutes = [t / 60 for t in one.times_s]
        label = one.name if one.name == GATEWAY else f"{one.name} (pid {one.pid})"
        memory.plot(minutes, [v / MIB for v in one.rss_bytes], label=label)
    memory.set_ylabel("RSS (MiB)")
    memory.legend(fontsize="small")
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        points = [(w.start_s / 60, getattr(w, key)) for w in found if getattr(w, key)]
        latency.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    latency.set_ylabel("latency per window (ms)")
    latency.set_xlabel("minutes")
    latency.set_ylim(bottom=0)
    latency.legend()
    for axis in (memory, latency):
        axis.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
