"""How many bytes a model takes when llama.cpp (or vLLM) runs it: pure functions, numbers in,
numbers out, no I/O, so each can be checked against what the engine itself reports.

The formulas follow llama.cpp 0.3.36's own code, not a curve fit:
- KV cache: ``kv_layout`` (plain, MLA, DeepSeek sparse attention, DeepSeek-V4).
- Compute buffer: ``llama_context::sched_reserve`` reserves the prompt graph at
  ``n_ubatch`` tokens with one output per slot; ggml's allocator frees each tensor after its
  last use, so the buffer is the largest of: the graph inputs (the attention mask lives
  until the last layer) plus the wider of one attention and one feed-forward block, or the
  output head.
  DeepSeek sparse attention adds the lightning indexer's mask, scores and top-k
  (``src/models/deepseek32.cpp``, ``llm_graph_context::build_attn`` with ``top_k``); for
  DeepSeek-V4 the block shapes come from ``src/models/deepseek4.cpp`` and are not yet
  checked against a run.
- Output buffer: ``llama_context::output_reserve``, n_vocab floats per slot.
"""

from __future__ import annotations

from dsdeploy.model.architecture import Architecture
from dsdeploy.planner.kv_layout import (
    CSA_RATIO,
    DEFAULT_UBATCH,
    F32,
    KV_PAD,
    dsv4_compressed_cells,
    dsv4_window_cells,
    kv_cache_bytes,
    kv_cells_per_slot,
    pad,
)

MIB = 2**20
GIB = 2**30
KV_TYPES = ("f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
RUNTIME_BASE_BYTES = 18 * MIB
RUNTIME_BYTES_PER_VOCAB_TOKEN = 330
"""Resident memory of llama-server beyond its buffers: code and slots, plus the tokenizer's
tables (33.5 MiB with SmolLM2's 49k tokens, 58.7 MiB with DeepSeek's 129k; measured by
benchmarks/plan_accuracy.py)."""
CUDA_CONTEXT_BYTES = 512 * MIB
"""Per GPU: CUDA context, cuBLAS workspace and kernels. Not measured here (no GPU); the
300–500 MiB commonly reported, rounded up so the plan errs toward fitting."""


def weights_bytes(params: int, bits_per_weight: float) -> int:
    """Weights without a file to read: parameters × the quant's effective bits per weight."""
    return int(params * bits_per_weight / 8)


def attention_phase_floats(arch: Architecture) -> int:
    """f32 activations per token alive inside one attention block: residual, norm, Q, K, V
    and the attention output (MLA adds the absorbed query and the latent output; V4 keeps
    ``hc_mult`` residual streams, a query before and after RoPE, and a grouped output)."""
    if arch.is_dsv4:
        q = arch.n_heads * arch.head_dim
        streams = 2 * arch.hc_mult * arch.hidden
        low_rank = arch.q_lora_rank + arch.o_groups * arch.o_lora_rank
        return streams + arch.hidden + low_rank + 3 * q + arch.head_dim
    if arch.is_mla:
        latent = arch.kv_lora_rank + arch.qk_rope_head_dim
        q = arch.n_heads * (arch.qk_nope_head_dim + arch.qk_rope_head_dim)
        absorbed = arch.n_heads * latent + arch.n_heads * arch.kv_lora_rank
        return (
            2 * arch.hidden
            + arch.q_lora_rank
            + q
            + absorbed
            + latent
            + (arch.n_heads * arch.v_head_dim)
        )
    q = arch.n_heads * arch.head_dim
    return 2 * arch.hidden + 2 * q + 2 * arch.n_kv_heads * arch.head_dim


def ffn_phase_floats(arch: Architecture) -> int:
    """f32 activations per token alive in the widest feed-forward block: residual, norm and
    gate/up/product; MoE adds router logits and one row per chosen expert."""
    dense = 3 * arch.hidden + 3 * arch.intermediate
    if not arch.is_moe:
        return dense
    k = arch.experts_per_token
    shared = 3 * arch.n_shared_experts * arch.moe_intermediate
    moe = 3 * arch.hidden + 3 * k * arch.moe_intermediate + k * arch.hidden + shared
    moe += 2 * arch.n_routed_experts + 2 * arch.hc_mult * arch.hidden
    return max(moe, dense if arch.first_k_dense_replace else 0)


def indexer_phase_bytes(arch: Architecture, n_kv: int, tokens: int, mask_bytes: int) -> int:
    """The lightning indexer inside one attention block (fused scoring): its queries before
    and after the Hadamard rotation and per-head weights, then the larger of two steps that
    do not overlap: one f32 score per cell and token with the top-k indices drawn from them,
    or the attention mask rebuilt from those indices (filled with -inf, the chosen cells
    unmasked, the causal mask added)."""
    if not arch.has_indexer:
        return 0
    queries = tokens * (2 * arch.index_n_heads * arch.index_head_dim + arch.index_n_heads) * F32
    top_k = tokens * min(arch.index_topk, n_kv) * F32
    scoring = n_kv * tokens * F32 + 2 * top_k
    masking = 2 * n_kv * tokens * mask_bytes + top_k
    return queries + max(scoring, masking)


def attended_cells(
    arch: Architecture, ctx_total: int, slots: int, unified: bool
) -> tuple[int, int]:
    """Cells one slot's attention and its indexer look at: the whole stream; for V4 the
    raw-token window plus the 4× compressed rows (which the indexer scores)."""
    cells = kv_cells_per_slot(ctx_total, slots, unified=unified)
    if not arch.is_dsv4:
        return cells, cells
    compressed = dsv4_compressed_cells(cells, CSA_RATIO)
    return dsv4_window_cells(arch, cells) + compressed, compressed


def compute_buffer_bytes(
    arch: Architecture,
    ctx_total: int,
    slots: int,
    *,
    flash_attention: bool,
    n_ubatch: int = DEFAULT_UBATCH,
    n_outputs: int | None = None,
    unified: bool = False,
) -> int:
    """llama.cpp's compute buffer: the prompt graph reserved at ``n_ubatch`` tokens with
    ``n_outputs`` logit rows (llama-server: one per slot; a context that keeps every logit:
    ``n_ubatch``). Without flash attention the f32 KQ scores of one layer dominate."""
    tokens = min(pad(ctx_total, KV_PAD), n_ubatch)
    n_kv, n_indexed = attended_cells(arch, ctx_total, slots, unified)
    outputs = min(tokens, slots if n_outputs is None else n_outputs)
    mask_bytes = 2 if flash_attention else F32
    mask = n_kv * tokens * mask_bytes
    if arch.has_indexer:  # the indexer's own mask, f16 for fused scoring
        mask += n_indexed * tokens * 2
    inputs = mask + tokens * arch.hidden * max(1, arch.hc_mult) * F32
    attention = tokens * attention_phase_floats(arch) * F32
    attention += indexer_phase_bytes(arch, n_indexed, tokens, mask_bytes)
    if not flash_attention:
        attention += n_kv * tokens * arch.n_heads * F32
    ffn = tokens * ffn_phase_floats(arch) * F32
    output = outputs * arch.vocab * F32 + 2 * tokens * arch.hidden * F32
    return max(inputs + max(attention, ffn), output)


def output_buffer_bytes(arch: Architecture, slots: int) -> int:
    """Host buffer the logits of one decode step land in: n_vocab floats per slot."""
    return arch.vocab * slots * F32


def llamacpp_runtime_bytes(vocab: int) -> int:
    return RUNTIME_BASE_BYTES + vocab * RUNTIME_BYTES_PER_VOCAB_TOKEN


def resident_bytes_after_load(weights: int, kv: int, output: int, vocab: int) -> int:
    """What llama-server's RSS settles at once loaded and warmed up: mapped weights, the KV
    cache (cleared, so touched), logits and the runtime. The compute buffer is reserved but
    only touched by long prompts, so a plan budgets it on top."""
    return weights + kv + output + llamacpp_runtime_bytes(vocab)


SMALLEST_USEFUL_CONTEXT = 2048


def smallest_serving_bytes(arch: Architecture, weights: int) -> int:
    """Memory llama-server needs to serve one request of ``SMALLEST_USEFUL_CONTEXT`` tokens
    (or the trained context, if shorter): what a download is checked against before any
    byte arrives. Less than this and the model cannot be used here at all."""
    ctx = min(SMALLEST_USEFUL_CONTEXT, arch.max_positions or SMALLEST_USEFUL_CONTEXT)
    kv = kv_cache_bytes(arch, ctx, 1).total
    resident = resident_bytes_after_load(weights, kv, output_buffer_bytes(arch, 1), arch.vocab)
    return resident + compute_buffer_bytes(arch, ctx, 1, flash_attention=True)


def bytes_read_per_token(active_params: int, bits_per_weight: float, kv_bytes: int = 0) -> float:
    """Bytes one decoded token reads from memory: every active weight once (a MoE reads only
    the experts its router picks) plus the KV cache it attends over."""
    return active_params * bits_per_weight / 8 + kv_bytes


def decode_tokens_per_s_bound(bandwidth_bytes_per_s: float, bytes_per_token: float) -> float:
    """Decode is memory-bound: no engine can beat bandwidth ÷ bytes per token for one stream."""
    return bandwidth_bytes_per_s / bytes_per_token
