"""The KV cache llama.cpp 0.3.36 allocates, per attention family: pure functions, so each
part can be set beside the ``llama_kv_cache: size = …`` lines the engine logs.

- Plain attention (``src/llama-kv-cache.cpp``): a K and a V tensor per layer,
  ``n_kv_heads × head_dim`` values per cell; n_ctx padded to 256; without a unified cache
  every slot is a stream of ``pad256(n_ctx / slots)`` cells (``src/llama-context.cpp``).
- Multi-head latent attention (DeepSeek-V2/V3): K only, the latent plus the RoPE key; V is
  read back out of the latent.
- DeepSeek sparse attention (V3.2, ``src/llama-kv-cache-dsa.cpp``): the MLA cache plus the
  lightning indexer's own key cache, a second cache of one ``index_head_dim`` head, K only,
  in the K cache's type, with the same cells, for every trunk layer (the MTP layer has none).
- DeepSeek-V4 (``src/llama-kv-cache-dsv4.cpp``): every layer keeps a window of raw keys, one
  shared ``head_dim`` head read as both K and V: the SWA half of an iSWA cache, of
  ``pad256(min(cells, sliding_window + n_ubatch))`` cells. Layers at ratio 4 (CSA) add keys
  compressed 4× and the indexer's keys compressed 4×; layers at ratio 128 (HCA) keys
  compressed 128×: ``pad256(ceil(cells / ratio))`` rows each. Every compressor also keeps an
  f32 state (a kv and a score tensor) per slot: CSA ``2·ratio`` rows of ``2·head_dim``, HCA
  ``ratio`` rows of ``head_dim``, the indexer's ``2·ratio`` rows of ``2·index_head_dim``.
  V4 keeps one stream per slot even when the cache is unified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from dsdeploy.model.architecture import Architecture

KV_PAD = 256
"""llama.cpp pads n_ctx and each stream's cells to 256."""
DEFAULT_UBATCH = 512
F32 = 4
CSA_RATIO = 4
HCA_RATIO = 128


def pad(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def row_bytes(type_name: str, n: int) -> int:
    """Bytes of ``n`` values stored as ggml ``type_name`` (q8_0: 34 bytes per 32 values)."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]
    return pad(n, block) // block * size


def kv_cells_per_slot(ctx_total: int, slots: int, *, unified: bool = False) -> int:
    """Cells one slot (stream) holds; dsdeploy passes ``--no-kv-unified``."""
    n_ctx = pad(ctx_total, KV_PAD)
    return n_ctx if unified else pad(n_ctx // slots, KV_PAD)


@dataclass(frozen=True)
class KvBytes:
    """The cache by part. ``k``: keys (MLA: the latent; V4: the raw-token window);
    ``indexer``: lightning-indexer keys; ``compressed``: V4's 4× and 128× compressed keys;
    ``state``: V4's f32 compressor state."""

    k: int
    v: int
    indexer: int = 0
    compressed: int = 0
    state: int = 0

    @property
    def total(self) -> int:
        return self.k + self.v + self.indexer + self.compressed + self.state

    def parts(self) -> dict[str, int]:
        """The parts this cache has, by name."""
        return {name: size for name, size in asdict(self).items() if size}


def kv_row_widths(arch: Architecture) -> tuple[int, int]:
    """Values per cell per layer in K and V. MLA stores the latent and the RoPE key in K and
    nothing in V; V4's one head is stored once, in K."""
    if arch.is_mla:
        return arch.kv_lora_rank + arch.qk_rope_head_dim, 0
    width = arch.n_kv_heads * arch.head_dim
    return (width, 0) if arch.is_dsv4 else (width, width)


def kv_cache_bytes(
    arch: Architecture,
    ctx_total: int,
    slots: int,
    k_type: str = "f16",
    v_type: str = "f16",
    *,
    unified: bool = False,
    n_ubatch: int = DEFAULT_UBATCH,
) -> KvBytes:
    """llama.cpp's KV cache for ``ctx_total`` tokens shared by ``slots`` slots."""
    if arch.is_dsv4:
        return dsv4_cache_bytes(arch, ctx_total, slots, k_type, n_ubatch=n_ubatch)
    cells = kv_cells_per_slot(ctx_total, slots, unified=unified) * (1 if unified else slots)
    k_width, v_width = kv_row_widths(arch)
    n = arch.n_layers
    return KvBytes(
        k=n * cells * row_bytes(k_type, k_width),
        v=n * cells * row_bytes(v_type, v_width) if v_width else 0,
        indexer=n * cells * row_bytes(k_type, arch.index_head_dim) if arch.has_indexer else 0,
    )


def dsv4_window_cells(arch: Architecture, cells: int, n_ubatch: int = DEFAULT_UBATCH) -> int:
    """Raw-token cells per slot: the window plus one ubatch, at most the context."""
    return pad(min(cells, arch.sliding_window + n_ubatch), KV_PAD)


def dsv4_compressed_cells(cells: int, ratio: int) -> int:
    return pad(max(1, -(-cells // ratio)), KV_PAD)


def dsv4_cache_bytes(
    arch: Architecture, ctx_total: int, slots: int, k_type: str, *, n_ubatch: int
) -> KvBytes:
    """DeepSeek-V4's caches for ``slots`` streams of ``pad256(ctx / slots)`` cells each."""
    cells = kv_cells_per_slot(ctx_total, slots)
    width, _ = kv_row_widths(arch)
    ratios = [arch.ratio(il) for il in range(arch.n_layers)]
    csa, hca = ratios.count(CSA_RATIO), ratios.count(HCA_RATIO)
    csa_rows = dsv4_compressed_cells(cells, CSA_RATIO)
    hca_rows = dsv4_compressed_cells(cells, HCA_RATIO)
    window = arch.n_layers * dsv4_window_cells(arch, cells, n_ubatch) * row_bytes(k_type, width)
    compressed = (csa * csa_rows + hca * hca_rows) * row_bytes(k_type, width)
    indexer = csa * csa_rows * row_bytes(k_type, arch.index_head_dim)
    state_floats = csa * 2 * (2 * CSA_RATIO) * (2 * width)
    state_floats += hca * 2 * HCA_RATIO * width
    state_floats += csa * 2 * (2 * CSA_RATIO) * (2 * arch.index_head_dim)
    return KvBytes(
        k=slots * window,
        v=0,
        indexer=slots * indexer,
        compressed=slots * compressed,
        state=slots * state_floats * F32,
    )


def kv_bytes_per_token(arch: Architecture, dtype_bytes: float = 2) -> float:
    """Bytes one more token of context takes across all layers (vLLM's block pool, llama.cpp
    f16). V4's window is a fixed cost, so a token adds only its compressed rows."""
    k_width, v_width = kv_row_widths(arch)
    if arch.is_dsv4:
        ratios = [arch.ratio(il) for il in range(arch.n_layers)]
        per_token = sum(k_width / r for r in ratios if r)
        per_token += ratios.count(CSA_RATIO) * arch.index_head_dim / CSA_RATIO
        return per_token * dtype_bytes
    return arch.n_layers * (k_width + v_width + arch.index_head_dim) * dtype_bytes
