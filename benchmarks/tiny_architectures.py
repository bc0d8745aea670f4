"""Every DeepSeek architecture through the llama.cpp path: a tiny checkpoint of each
(benchmarks/tiny_checkpoints.py) is converted and quantized to Q4_K_M by ``dsdeploy
convert``'s own code, loaded by llama-server at ``-lv 4``, and its buffers are set beside the
planner's estimate for the file that was stored.

Prints the matrix (converted? quantized? loaded? estimate/measured MiB per buffer) and
writes benchmarks/results/tiny_architectures.json.

    python benchmarks/tiny_architectures.py [--quick] [--home DIR]
    --quick: DeepSeek-V3 only; --home: measure the tiny-ARCH models that `dsdeploy convert`
    already stored in DIR instead of converting them again (conversions are the slow part)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dsdeploy.convert import Conversion, convert
from dsdeploy.engines import llamacpp_locate
from dsdeploy.errors import DsdeployError
from dsdeploy.modelfile import read_gguf_layout
from dsdeploy.progress import ProgressHook
from dsdeploy.settings import Settings
from dsdeploy.store import Store
from plan_accuracy import BUFFERS, Case, measure
from tiny_checkpoints import TINY_ARCHITECTURES, build_tiny

RESULTS = Path(__file__).parent / "results" / "tiny_architectures.json"
QUANT = "Q4_K_M"
SHAPE = (2048, 1, True)
"""Context, slots, flash attention: the shape ``serve`` plans for a small model."""


@dataclass
class ArchRow:
    arch: str
    converted: bool = False
    quantized: bool = False
    loaded: bool = False
    convert_s: float = 0.0
    file_mib: float = 0.0
    error: str = ""
    measured: dict[str, float] = field(default_factory=dict)
    estimate: dict[str, float] = field(default_factory=dict)


@contextmanager
def quiet_bar(label: str) -> Iterator[ProgressHook]:
    yield lambda done, total: None


def run_arch(settings: Settings, binary: Path, arch: str, work: Path) -> ArchRow:
    row = ArchRow(arch)
    store = Store(settings.dirs.models)
    manifest = store.manifest(f"tiny-{arch}")
    if manifest is None:
        folder = build_tiny(arch, work / f"tiny-{arch}", work)
        started = time.perf_counter()
        try:
            job = Conversion(folder, f"tiny-{arch}", QUANT)
            manifest = convert(settings, job, quiet_bar, lambda line: None)
        except DsdeployError as exc:
            row.error = str(exc)
            return row
        row.convert_s = time.perf_counter() - started
    row.converted = row.quantized = True
    path = store.weights_path(manifest)
    row.file_mib = path.stat().st_size / 2**20
    layout = read_gguf_layout(path)
    ctx, slots, fa = SHAPE
    measured = measure(binary, path, layout, Case(f"tiny-{arch}", ctx, slots, "f16", fa))
    row.loaded = not measured.refused
    row.measured = {k: round(v, 2) for k, v in measured.actual.items()}
    row.estimate = {k: round(v, 2) for k, v in measured.estimate.items()}
    return row


def print_table(rows: list[ArchRow]) -> None:
    names = (*BUFFERS, "rss")
    print(
        f"{'arch':<13} conv quant load  sec   MiB | "
        + " | ".join(f"{b:>7} est/meas" for b in names)
    )
    for row in rows:
        flags = " ".join(f"{'yes' if ok else 'no':<4}" for ok in (row.converted, row.quantized))
        head = f"{row.arch:<13} {flags} {'yes' if row.loaded else 'no':<4}"
        if row.error:
            print(f"{head} {row.error}")
            continue
        cells = " | ".join(f"{row.estimate[b]:7.2f}/{row.measured.get(b, 0):7.2f}" for b in names)
        print(f"{head} {row.convert_s:5.0f} {row.file_mib:5.1f} | {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="DeepSeek-V3 only")
    parser.add_argument("--home", type=Path, help="measure the tiny models stored here")
    args = parser.parse_args()
    archs = ("deepseek-v3",) if args.quick else TINY_ARCHITECTURES
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=args.home or Path(tmp), cache_dir=Settings().dirs.cache)
        installed = llamacpp_locate.locate(settings.dirs, None, "cpu")
        if installed is None:
            raise SystemExit("no llama-server: run `dsdeploy engine install` first")
        rows = []
        for arch in archs:
            print(f"tiny {arch}: build, convert, quantize, load", file=sys.stderr)
            rows.append(run_arch(settings, installed.binary, arch, Path(tmp)))
    print_table(rows)
    out = RESULTS.with_suffix(".quick.json") if args.quick else RESULTS
    out.parent.mkdir(exist_ok=True)
    result = {"quant": QUANT, "ctx_slots_fa": SHAPE, "rows": [asdict(r) for r in rows]}
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
