"""How long the model file checks take before an engine is given a file.

Three files: the default model (SmolLM2-135M Q4_1, 49k-token vocabulary, from the store, or
``--model PATH``), a synthetic GGUF shaped like DeepSeek-V3 in Q4_K (61 layers of 256
experts, a 129,280-token vocabulary, ~380 GB written as a sparse file: only the header is
real), and a synthetic safetensors shard with 1,500 tensors. Each is checked ``--reps``
times with the verdict cache out of the way; the table shows the median and the slowest.

    python benchmarks/model_check.py [--reps 5] [--model PATH]

Prints a table and writes benchmarks/results/model_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from dsdeploy.model.gguf_check import check_gguf_model
from dsdeploy.model.safetensors_check import check_safetensors
from dsdeploy.settings import DEFAULT_MODEL, Settings
from dsdeploy.store import Store

RESULTS = Path(__file__).parent / "results" / "model_check.json"
Q4_K, F32 = GGMLQuantizationType.Q4_K, GGMLQuantizationType.F32


def gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def deepseek_like_tensors(layers: int, vocab: int) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, ggml dims, type) of a DeepSeek-V3-shaped model (its published shapes)."""
    tensors = [("token_embd.weight", (7168, vocab), Q4_K), ("output_norm.weight", (7168,), F32)]
    for n in range(layers):
        tensors += [
            (f"blk.{n}.attn_norm.weight", (7168,), F32),
            (f"blk.{n}.attn_q_a.weight", (7168, 1536), Q4_K),
            (f"blk.{n}.attn_q_b.weight", (1536, 24576), Q4_K),
            (f"blk.{n}.attn_kv_a_mqa.weight", (7168, 576), Q4_K),
            (f"blk.{n}.attn_kv_b.weight", (512, 32768), Q4_K),
            (f"blk.{n}.attn_output.weight", (16384, 7168), Q4_K),
            (f"blk.{n}.ffn_norm.weight", (7168,), F32),
            (f"blk.{n}.ffn_gate_inp.weight", (7168, 256), F32),
            (f"blk.{n}.ffn_gate_exps.weight", (7168, 2048, 256), Q4_K),
            (f"blk.{n}.ffn_up_exps.weight", (7168, 2048, 256), Q4_K),
            (f"blk.{n}.ffn_down_exps.weight", (2048, 7168, 256), Q4_K),
            (f"blk.{n}.ffn_gate_shexp.weight", (7168, 2048), Q4_K),
        ]
    tensors.append(("output.weight", (7168, vocab), Q4_K))
    return tensors


def write_gguf(path: Path, layers: int, vocab: int) -> int:
    """A GGUF whose header is complete and whose data section is a hole; returns its size."""
    tokens = [f"tok{i}" for i in range(vocab)]
    kv = [
        gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("deepseek2"),
        gguf_string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, vocab)
        + b"".join(map(gguf_string, tokens)),
        gguf_string("tokenizer.ggml.token_type")
        + struct.pack("<IIQ", 9, 5, vocab)
        + struct.pack(f"<{vocab}i", *[1] * vocab),
        gguf_string("tokenizer.ggml.merges")
        + struct.pack("<IIQ", 9, 8, vocab)
        + b"".join(gguf_string(f"t o{i}") for i in range(vocab)),
        gguf_string("tokenizer.ggml.bos_token_id") + struct.pack("<II", 4, 0),
    ]
    infos, offset = [], 0
    for name, dims, kind in deepseek_like_tensors(layers, vocab):
        block, block_bytes = GGML_QUANT_SIZES[kind]
        elements = 1
        for dim in dims:
            elements *= dim
        infos.append(
            gguf_string(name) + struct.pack(f"<I{len(dims)}qIQ", len(dims), *dims, kind, offset)
        )
        offset += -(-(elements // block * block_bytes) // 32) * 32
    header = b"GGUF" + struct.pack("<Iqq", 3, len(infos), len(kv)) + b"".join(kv + infos)
    size = -(-len(header) // 32) * 32 + offset
    with path.open("wb") as out:
        out.write(header)
        out.truncate(size)
    return size


def write_safetensors(path: Path, tensors: int) -> int:
    header, offset = {}, 0
    for n in range(tensors):
        shape = [7168, 2048]
        size = 7168 * 2048 * 2
        header[f"model.layers.{n // 25}.mlp.experts.{n}.weight"] = {
            "dtype": "BF16",
            "shape": shape,
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    total = 8 + len(raw) + offset
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        out.truncate(total)
    return total


def timed(check: Callable[[], None], reps: int) -> list[float]:
    check()  # warm: imports, page cache
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        check()
        times.append(time.perf_counter() - began)
    return times


def default_model(given: Path | None) -> Path | None:
    if given is not None:
        return given
    store = Store(Settings().dirs.models)
    manifest = store.manifest(DEFAULT_MODEL)
    return store.weights_path(manifest) if manifest else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the store's smollm2)")
    parser.add_argument("--quick", action="store_true", help="4 layers, one rep: a check it runs")
    args = parser.parse_args()
    layers = 4 if args.quick else 61
    reps = 1 if args.quick else args.reps
    rows = []
    with tempfile.TemporaryDirectory(prefix="model-check-bench-", dir=Path.home()) as tmp:
        files: dict[str, tuple[Path, int, Callable[[Path], None]]] = {}
        model = default_model(args.model)
        if model is not None:
            files["SmolLM2-135M Q4_1"] = (model, model.stat().st_size, check_gguf_model)
        synthetic = Path(tmp) / "deepseek-like.gguf"
        size = write_gguf(synthetic, layers, 129280)
        files[f"DeepSeek-V3-shaped Q4_K, {layers} layers"] = (synthetic, size, check_gguf_model)
        shard = Path(tmp) / "shard.safetensors"
        files["safetensors shard, 1500 tensors"] = (
            shard,
            write_safetensors(shard, 1500),
            check_safetensors,
        )
        for name, (path, size, check) in files.items():
            times = timed(partial(check, path), reps)
            rows.append(
                {
                    "file": name,
                    "size_gb": size / 1e9,
                    "median_ms": statistics.median(times) * 1000,
                    "max_ms": max(times) * 1000,
                }
            )
    load = os.getloadavg()[0]
    print(f"{reps} reps after one warm-up, load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'file':<36} {'size GB':>9} {'median ms':>10} {'max ms':>8}")
    for row in rows:
        print(
            f"{row['file']:<36} {row['size_gb']:>9.1f} {row['median_ms']:>10.0f} "
            f"{row['max_ms']:>8.0f}"
        )
    out = RESULTS.with_suffix(".quick.json") if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"load_average": load, "reps": reps, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
