"""How close dsdeploy's memory estimate comes to what llama-server really allocates.

For SmolLM2 (context 512/2048/8192 × slots 1/4 × KV f16/q8_0 × flash attention on/off) and
tiny random-weight DeepSeek-V2, DeepSeek-V3 (MLA + MoE) and Llama checkpoints converted
with llama.cpp's converter, llama-server is started at ``-lv 4``; its model, KV, compute and
output buffers, its own fit projection and its peak RSS are set beside the estimate.

Target: every buffer within 5% (or 16 MiB), RSS within 15% (or 64 MiB), and a total at
least as close as llama.cpp's own projection. Prints a table and writes
benchmarks/results/plan_accuracy.json.

    python benchmarks/plan_accuracy.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from dsdeploy import catalog
from dsdeploy.engines import llamacpp_locate
from dsdeploy.engines.llamacpp_buffers import parse_buffers
from dsdeploy.modelfile import ModelLayout, read_gguf_layout
from dsdeploy.planner import kv_layout, memory
from dsdeploy.progress import ProgressHook
from dsdeploy.pull import pull
from dsdeploy.settings import Settings
from dsdeploy.store import Store
from llama_server_run import run_server
from tiny_checkpoints import TINY_ARCHITECTURES, tiny_gguf

RESULTS = Path(__file__).parent / "results" / "plan_accuracy.json"
MIB = 2**20
BUFFERS = ("model", "kv", "compute", "output")


@dataclass(frozen=True)
class Case:
    model: str
    ctx: int
    slots: int
    kv_type: str
    flash_attention: bool


@dataclass(frozen=True)
class Row:
    case: Case
    actual: dict[str, float]
    estimate: dict[str, float]
    llama_projection_mib: float | None
    refused: str = ""

    def within(self, name: str) -> bool:
        limit = (0.15, 64.0) if name == "rss" else (0.05, 16.0)
        error = abs(self.estimate[name] - self.actual[name])
        return error <= max(limit[0] * self.actual[name], limit[1])


def estimate(layout: ModelLayout, case: Case) -> dict[str, int]:
    arch = layout.architecture
    kv = kv_layout.kv_cache_bytes(arch, case.ctx, case.slots, case.kv_type, case.kv_type).total
    output = memory.output_buffer_bytes(arch, case.slots)
    compute = memory.compute_buffer_bytes(
        arch, case.ctx, case.slots, flash_attention=case.flash_attention
    )
    rss = memory.resident_bytes_after_load(layout.weight_bytes, kv, output, arch.vocab)
    return {
        "model": layout.weight_bytes,
        "kv": kv,
        "compute": compute,
        "output": output,
        "rss": rss,
    }


def measure(binary: Path, path: Path, layout: ModelLayout, case: Case) -> Row:
    args = [
        "-c",
        str(case.ctx),
        "--parallel",
        str(case.slots),
        "--no-kv-unified",
        "-t",
        "2",
        "-ctk",
        case.kv_type,
        "-ctv",
        case.kv_type,
        "-fa",
        "on" if case.flash_attention else "off",
    ]
    guess = {k: v / MIB for k, v in estimate(layout, case).items()}
    try:
        run = run_server(binary, path, args)
    except RuntimeError as exc:
        reason = "refused" if "failed to create_context" in str(exc) else "failed"
        return Row(case, {}, guess, None, refused=reason)
    reported = parse_buffers(run.log)
    actual = {k: getattr(reported, k) / MIB for k in BUFFERS} | {"rss": run.peak_rss / MIB}
    projection = reported.projection / MIB if reported.projection else None
    return Row(case, actual, guess, projection)


TINY_SHAPES = ((2048, 1, True), (2048, 4, True), (8192, 1, False))
QUICK_ARCHITECTURES = ("deepseek-v3",)
"""The quick run keeps one MLA + MoE model, the shape the catalog's DeepSeeks have."""


def cases(quick: bool) -> list[tuple[str, Case]]:
    grid = [
        Case("smollm2", ctx, slots, kv, fa)
        for ctx in ((2048,) if quick else (512, 2048, 8192))
        for slots in (1, 4)
        for kv in ("f16", "q8_0")
        for fa in (True, False)
    ]
    tiny = [
        Case(f"tiny-{arch}", ctx, slots, "f16", fa)
        for arch in (QUICK_ARCHITECTURES if quick else TINY_ARCHITECTURES)
        for ctx, slots, fa in (((2048, 1, True),) if quick else TINY_SHAPES)
    ]
    return [(c.model, c) for c in grid + tiny]


@contextmanager
def quiet_bar(label: str) -> Iterator[ProgressHook]:
    yield lambda done, total: None


def model_paths(settings: Settings, work: Path, quick: bool) -> dict[str, Path]:
    store = Store(settings.dirs.models)
    manifest = pull(catalog.get("smollm2"), store, settings.hub, quiet_bar)
    paths = {"smollm2": store.weights_path(manifest)}
    for arch in QUICK_ARCHITECTURES if quick else TINY_ARCHITECTURES:
        print(f"building tiny {arch} checkpoint and converting it to GGUF", file=sys.stderr)
        paths[f"tiny-{arch}"] = tiny_gguf(settings.dirs, arch, work)
    return paths


def print_table(rows: list[Row]) -> None:
    head = (
        "model              ctx slots kv   fa  | "
        + " | ".join(f"{b:>7} act/est" for b in (*BUFFERS, "rss"))
        + " | llama proj | ok"
    )
    print(head)
    for row in rows:
        c = row.case
        fa = "on " if c.flash_attention else "off"
        label = f"{c.model:<18} {c.ctx:>5} {c.slots:>2} {c.kv_type:<4} {fa}"
        if row.refused:
            print(f"{label} | engine {row.refused} (quantized V cache needs flash attention)")
            continue
        cells = " | ".join(
            f"{row.actual[b]:7.2f}/{row.estimate[b]:7.2f}" for b in (*BUFFERS, "rss")
        )
        proj = f"{row.llama_projection_mib:7.0f}" if row.llama_projection_mib else "      -"
        ok = all(row.within(b) for b in (*BUFFERS, "rss"))
        print(f"{label} | {cells} | {proj}    | {'yes' if ok else 'NO'}")


def summary(rows: list[Row]) -> dict[str, float]:
    measured = [r for r in rows if not r.refused]
    ours = [
        abs(sum(r.estimate[b] for b in BUFFERS) - sum(r.actual[b] for b in BUFFERS))
        for r in measured
    ]
    theirs = [
        abs(r.llama_projection_mib - sum(r.actual[b] for b in BUFFERS))
        for r in measured
        if r.llama_projection_mib
    ]
    rss_ours = [abs(r.estimate["rss"] - r.actual["rss"]) / r.actual["rss"] for r in measured]
    rss_theirs = [
        abs(r.llama_projection_mib - r.actual["rss"]) / r.actual["rss"]
        for r in measured
        if r.llama_projection_mib
    ]
    return {
        "cases": len(rows),
        "all_within_targets": all(r.within(b) for r in measured for b in (*BUFFERS, "rss")),
        "max_buffer_total_error_mib_ours": max(ours),
        "max_buffer_total_error_mib_llama_projection": max(theirs),
        "max_rss_error_ours": max(rss_ours),
        "max_rss_error_llama_projection": max(rss_theirs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="SmolLM2 at 2048 and one tiny DeepSeek-V3 case"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), cache_dir=Settings().dirs.cache)
        installed = llamacpp_locate.locate(settings.dirs, None, "cpu")
        if installed is None:
            raise SystemExit("no llama-server: run `dsdeploy engine install` first")
        paths = model_paths(settings, Path(tmp), args.quick)
        layouts = {name: read_gguf_layout(path) for name, path in paths.items()}
        rows = [
            measure(installed.binary, paths[m], layouts[m], case) for m, case in cases(args.quick)
        ]
    print_table(rows)
    result = summary(rows)
    print(json.dumps(result, indent=1))
    out = RESULTS.with_suffix(".quick.json") if args.quick else RESULTS
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": result, "rows": [asdict(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
