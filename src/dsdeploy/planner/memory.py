"""How many bytes a model takes when llama.cpp (or vLLM) runs it: pure functions, numbers in,
numbers out, no I/O, so each can be checked against what the engine itself reports.

The formulas follow llama.cpp 0.3.36's own code, not a curve fit:
- KV cache: ``src/llama-kv-cache.cpp`` (one K and one V tensor per layer, ``n_embd_k_gqa`` ×
  cells × streams; MLA keeps only the compressed latent plus the RoPE part, K-only) and
  ``src/llama-context.cpp`` (n_ctx padded to 256; without a unified cache every slot is a
  stream of ``pad256(n_ctx / slots)`` cells).
- Compute buffer: ``llama_context::sched_reserve`` reserves the prompt graph at
  ``n_ubatch`` tokens with one output per slot; ggml's allocator frees each tensor after its
  last use, so the buffer is the largest of: the graph inputs (the attention mask lives
  until the last layer) plus the wider of one attention and one feed-forward block, or the
  output head.
- Output buffer: ``llama_context::output_reserve``, n_vocab floats per slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from dsdeploy.model.architecture import Architecture

MIB = 2**20
GIB = 2**30
F32 = 4
KV_PAD = 256
"""llama.cpp pads n_ctx and each stream's cells to 256."""
DEFAULT_UBATCH = 512
KV_TYPES = ("f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
RUNTIME_BASE_BYTES = 18 * MIB
RUNTIME_BYTES_PER_VOCAB_TOKEN = 330
"""Resident memory of llama-server beyond its buffers: code and slots, plus the tokenizer's
tables (33.5 MiB with SmolLM2's 49k tokens, 58.7 MiB with DeepSeek's 129k; measured by
benchmarks/plan_accuracy.py)."""
CUDA_CONTEXT_BYTES = 512 * MIB
"""Per GPU: CUDA context, cuBLAS workspace and kernels. Not measured here (no GPU); the
300–500 MiB commonly reported, rounded up so the plan errs toward fitting."""


def pad(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def row_bytes(type_name: str, n: int) -> int:
    """Bytes of ``n`` values stored as ggml ``type_name`` (q8_0: 34 bytes per 32 values)."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]
    return pad(n, block) // block * size


def weights_bytes(params: int, bits_per_weight: float) -> int:
    """Weights without a file to read: parameters × the quant's effective bits per weight."""
    return int(params * bits_per_weight / 8)


def kv_cells_per_slot(ctx_total: int, slots: int, *, unified: bool = False) -> int:
    """Cells one slot (stream) holds; dsdeploy passes ``--no-kv-unified``."""
    n_ctx = pad(ctx_total, KV_PAD)
    return n_ctx if unified else pad(n_ctx // slots, KV_PAD)


@dataclass(frozen=True)
class KvBytes:
    k: int
    v: int

    @property
    def total(self) -> int:
        return self.k + self.v


def kv_row_widths(arch: Architecture) -> tuple[int, int]:
    """Values per token per layer in K and V. MLA stores the latent and the RoPE key in K
    and nothing in V (V is read back out of the latent)."""
    if arch.is_mla:
        return arch.kv_lora_rank + arch.qk_rope_head_dim, 0
    width = arch.n_kv_heads * arch.head_dim
    return width, width


def kv_cache_bytes(
    arch: Architecture,
    ctx_total: int,
    slots: int,
    k_type: str = "f16",
    v_type: str = "f16",
    *,
    layers: int | None = None,
    unified: bool = False,
) -> KvBytes:
    """llama.cpp's KV cache for ``layers`` layers (all by default)."""
    cells = kv_cells_per_slot(ctx_total, slots, unified=unified) * (1 if unified else slots)
    k_width, v_width = kv_row_widths(arch)
    n = arch.n_layers if layers is None else layers
    return KvBytes(
        k=n * cells * row_bytes(k_type, k_width),
        v=n * cells * row_bytes(v_type, v_width) if v_width else 0,
    )


def kv_bytes_per_token(arch: Architecture, dtype_bytes: float = 2) -> float:
    """Bytes one token of context takes in every layer (vLLM's block pool, llama.cpp f16)."""
    k_width, v_width = kv_row_widths(arch)
    return arch.n_layers * (k_width + v_width) * dtype_bytes


def attention_phase_floats(arch: Architecture) -> int:
    """f32 activations per token alive inside one attention block: residual, norm, Q, K, V
    and the attention output (MLA adds the absorbed query and the latent output)."""
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
    moe += 2 * arch.n_routed_experts
    return max(moe, dense if arch.first_k_dense_replace else 0)


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
    n_kv = kv_cells_per_slot(ctx_total, slots, unified=unified)
    outputs = min(tokens, slots if n_outputs is None else n_outputs)
    mask = n_kv * tokens * (2 if flash_attention else F32)
    inputs = mask + tokens * arch.hidden * F32
    attention = tokens * attention_phase_floats(arch) * F32
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
