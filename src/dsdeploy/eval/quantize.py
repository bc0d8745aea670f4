"""Make quantized GGUF files with ``llama-quantize`` and describe what they hold."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.engines.llamacpp_tools import run_tool
from dsdeploy.errors import EvalError

ALLOWED_TYPE = re.compile(r"^\s*\d+\s+or\s+([A-Z][A-Z0-9_]*)\s+:", re.MULTILINE)
FULL_PRECISION = frozenset({"F32", "F16", "BF16"})
QUANT_SIZE = re.compile(r"quant size\s*=\s*[\d.]+ MiB \(([\d.]+) BPW\)")


def known_types(quantize_binary: Path) -> list[str]:
    """The file types this llama-quantize build accepts, read from its own help."""
    done = subprocess.run(
        [str(quantize_binary), "--help"], capture_output=True, text=True, check=False
    )
    return ALLOWED_TYPE.findall(done.stdout + done.stderr)


def check_types(requested: list[str], known: list[str]) -> list[str]:
    """Upper-cased and checked before anything runs: one bad name fails the whole command."""
    types = [name.upper() for name in requested]
    unknown = [name for name in types if name not in known]
    if unknown:
        raise EvalError(
            f"llama.cpp does not know the quantization {', '.join(unknown)}; "
            f"it knows: {', '.join(known)}"
        )
    return types


@dataclass(frozen=True)
class QuantizedFile:
    path: Path
    bits_per_weight: float
    """As llama-quantize reports it: tensor bits ÷ weights, with the types it actually
    chose (tensors whose rows do not fit a type's block fall back to another type)."""


def quantize(
    quantize_binary: Path,
    source: Path,
    out: Path,
    file_type: str,
    threads: int,
    on_output: Callable[[str], None] | None = None,
) -> QuantizedFile:
    """``--allow-requantize`` lets a quantized model be dequantized to an F16 reference;
    ``on_output`` sees each line as it comes (one per tensor: ``[  12/ 340] …``)."""
    output = run_tool(
        [quantize_binary, "--allow-requantize", source, out, file_type, str(threads)],
        f"llama-quantize {file_type}",
        on_output,
    )
    found = QUANT_SIZE.search(output)
    if found is None:
        raise EvalError(f"llama-quantize {file_type} did not report the size it wrote")
    return QuantizedFile(out, float(found.group(1)))


def bits_per_weight(gguf_path: Path) -> float:
    """Tensor bytes × 8 ÷ weights, over every tensor of the file."""
    from gguf import GGUFReader

    tensors = GGUFReader(gguf_path).tensors
    return sum(int(t.n_bytes) for t in tensors) * 8 / sum(int(t.n_elements) for t in tensors)


def weight_types(gguf_path: Path) -> dict[str, int]:
    """How many tensors of each ggml type the file holds, e.g. {'Q4_1': 210, 'F32': 61}."""
    from gguf import GGUFReader

    counts: dict[str, int] = {}
    for tensor in GGUFReader(gguf_path).tensors:
        name = tensor.tensor_type.name
        counts[name] = counts.get(name, 0) + 1
    return counts


def nominal_bits(file_type: str) -> float | None:
    """Bits per weight of the ggml type a llama-quantize file type is named after
    (Q4_K_M → Q4_K: 4.5); None for a name that is no ggml type (COPY)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    base = re.sub(r"_(S|M|L|XL|MOE)$", "", file_type)
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[base]]
    except KeyError:
        return None
    return type_size * 8 / block_size
