"""What a sparse-attention model's KV cache is made of, said in one line of a plan: the
parts differ in kind (a fixed window, compressed rows, indexer keys, f32 state), so a total
alone would hide why a long context costs what it does."""

from __future__ import annotations

from dsdeploy.model.architecture import Architecture
from dsdeploy.planner.kv_layout import CSA_RATIO, HCA_RATIO, kv_bytes_per_token
from dsdeploy.planner.memory import GIB, MIB


def size(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def kv_story(arch: Architecture, parts: dict[str, int]) -> str:
    """One line naming each part of the cache (``KvBytes.parts()``) and its size."""
    indexer = (
        f"lightning-indexer keys {size(parts.get('indexer', 0))} ({arch.index_head_dim} "
        f"values per token; they pick {arch.index_topk} cells for each query)"
    )
    if not arch.is_dsv4:
        return f"KV cache: MLA latent {size(parts.get('k', 0))} + {indexer}"
    ratios = [arch.ratio(il) for il in range(arch.n_layers)]
    return (
        f"KV cache: the last {arch.sliding_window} tokens (plus one batch) of all "
        f"{arch.n_layers} layers {size(parts.get('k', 0))}; keys compressed {CSA_RATIO}× "
        f"({ratios.count(CSA_RATIO)} layers) and {HCA_RATIO}× ({ratios.count(HCA_RATIO)} "
        f"layers) {size(parts.get('compressed', 0))}; {indexer}; compressor state "
        f"{size(parts.get('state', 0))}. Beyond the window a token of context costs "
        f"{kv_bytes_per_token(arch):,.0f} bytes at f16"
    )
