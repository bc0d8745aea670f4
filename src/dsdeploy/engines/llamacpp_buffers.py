"""What llama-server says it allocated, read from its ``-lv 4`` log: the ground truth the
memory estimate is measured against, and what ``serve`` can compare the plan with."""

from __future__ import annotations

import re
from dataclasses import dataclass

MIB = 2**20
BUFFER_LINE = re.compile(
    r"(?P<where>load_tensors|llama_context|llama_kv_cache|llama_dsv4_comp_state|sched_reserve):"
    r"\s+(?P<device>\S+)\s+(?P<kind>model|output|KV|compute|DSV4 \w+ state) buffer size ="
    r"\s+(?P<mib>[\d.]+) MiB"
)
"""DeepSeek-V4's compressor state is part of its cache, so its lines count as KV."""
KV_LINE = re.compile(
    r"llama_kv_cache: size =\s+[\d.]+ MiB \(\s*(?P<cells>\d+) cells.*K \((?P<k_type>\w+)\):\s+"
    r"(?P<k_mib>[\d.]+) MiB, V \((?P<v_type>\w+)\):\s+(?P<v_mib>[\d.]+) MiB"
)
PROJECTION_LINE = re.compile(r"projected to use (?P<mib>\d+) MiB of (?:host|device) memory")


@dataclass(frozen=True)
class ReportedBuffers:
    """Bytes per buffer kind, summed over devices (CPU_Mapped, CUDA0, …)."""

    model: int
    kv: int
    k: int
    v: int
    kv_cells: int
    compute: int
    output: int
    projection: int | None
    """llama.cpp's own fit projection (whole MiB), when it ran one."""

    @property
    def total(self) -> int:
        return self.model + self.kv + self.compute + self.output


def parse_buffers(log: str) -> ReportedBuffers:
    """Sum the buffer lines of one model load; raises ValueError when a kind is missing."""
    sizes = {"model": 0.0, "KV": 0.0, "compute": 0.0, "output": 0.0}
    seen: set[str] = set()
    for match in BUFFER_LINE.finditer(log):
        kind = "KV" if match["kind"].startswith("DSV4") else match["kind"]
        sizes[kind] += float(match["mib"])
        seen.add(kind)
    kv = KV_LINE.search(log)
    if kv is None or not {"model", "compute"} <= seen:
        raise ValueError("the log has no complete set of llama.cpp buffer lines (is it -lv 4?)")
    projection = PROJECTION_LINE.search(log)
    return ReportedBuffers(
        model=round(sizes["model"] * MIB),
        kv=round(sizes["KV"] * MIB),
        k=round(float(kv["k_mib"]) * MIB),
        v=round(float(kv["v_mib"]) * MIB),
        kv_cells=int(kv["cells"]),
        compute=round(sizes["compute"] * MIB),
        output=round(sizes["output"] * MIB),
        projection=int(projection["mib"]) * MIB if projection else None,
    )
