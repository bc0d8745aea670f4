"""Weight formats the planner chooses between, best quality first.

GGUF sizes and quality costs are llama.cpp's own table (``tools/quantize/quantize.cpp``:
file size in GiB and perplexity increase on Llama-3-8B, 8.03 B parameters), turned into bits
per weight; the unsloth dynamic quants of the 671B models from their published file sizes
(R1: 212 GB at UD-Q2_K_XL, 131 GB at UD-IQ1_S).
"""

from __future__ import annotations

from dataclasses import dataclass

from dsdeploy.model.architecture import Architecture

LLAMA3_8B_PARAMS = 8.03e9
MXFP4_BITS = 4.25
"""FP4 values with one 8-bit scale per 32 (what DeepSeek-V4's experts ship as)."""


@dataclass(frozen=True)
class Quant:
    name: str
    bits_per_weight: float
    nominal_bits: int
    quality: str
    """Measured cost, shown when the plan picks it."""


def from_llama3_size(gib: float) -> float:
    return gib * 2**30 * 8 / LLAMA3_8B_PARAMS


GGUF_QUANTS = (
    Quant("F16", 16.0, 16, "lossless"),
    Quant("Q8_0", from_llama3_size(7.96), 8, "+0.0026 perplexity on Llama-3-8B"),
    Quant("Q6_K", from_llama3_size(6.14), 6, "+0.0217 perplexity on Llama-3-8B"),
    Quant("Q5_K_M", from_llama3_size(5.33), 5, "+0.0569 perplexity on Llama-3-8B"),
    Quant("Q4_K_M", from_llama3_size(4.58), 4, "+0.1754 perplexity on Llama-3-8B"),
    Quant("Q4_1", from_llama3_size(4.78), 4, "+0.4511 perplexity on Llama-3-8B"),
    Quant("Q3_K_M", from_llama3_size(3.74), 3, "+0.6569 perplexity on Llama-3-8B"),
    Quant("Q2_K", from_llama3_size(2.96), 2, "+3.5199 perplexity on Llama-3-8B"),
    Quant("UD-Q2_K_XL", 212e9 * 8 / 671e9, 2, "dynamic 2-bit: experts 2-bit, attention higher"),
    Quant("UD-IQ1_S", 131e9 * 8 / 671e9, 1, "dynamic 1.58-bit: usable, clearly degraded"),
)
VLLM_FORMATS = (
    Quant("BF16", 16.0, 16, "lossless"),
    Quant("FP8", 8.0, 8, "native for DeepSeek-V3/R1; near-lossless elsewhere"),
    Quant("AWQ-INT4", 4.25, 4, "about +1-2% perplexity; group-128 scales"),
)


def released_fp4_fp8(arch: Architecture) -> Quant:
    """DeepSeek-V4 as released, which vLLM serves as it is: routed experts FP4, the rest FP8
    (block scales of 128×128 values are negligible). BF16 weights were never published."""
    experts = arch.routed_expert_params
    bits = (experts * MXFP4_BITS + (arch.total_params - experts) * 8) / arch.total_params
    return Quant("FP4+FP8", bits, 8, "the weights as released: routed experts FP4, the rest FP8")


def gguf_quant(name: str) -> Quant:
    return next(q for q in GGUF_QUANTS if q.name == name)
