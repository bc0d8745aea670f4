"""The shape of a transformer, as far as memory and speed depend on it.

Filled from a catalog entry, a GGUF header or a Hugging Face config.json; the names follow
the config.json keys so a number can be checked against its source at a glance.

Three attention families are told apart by their fields: plain (grouped-query) attention;
multi-head latent attention (``kv_lora_rank``, DeepSeek-V2/V3), with DeepSeek sparse
attention's lightning indexer on top when ``index_n_heads`` is set (V3.2); and DeepSeek-V4's
hybrid attention (``compress_ratios``): one shared key/value head of ``head_dim`` per layer,
a sliding window of raw tokens in every layer, plus a cache compressed 4× (with an indexer)
or 128× in the layers whose ratio says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    """Per-head K and V width for ordinary attention (hidden / heads unless set)."""
    intermediate: int
    """Dense feed-forward width."""
    vocab: int
    max_positions: int
    # Multi-head latent attention (DeepSeek-V2/V3): 0 when the model has none.
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Mixture of experts: 0 routed experts means a dense model.
    n_routed_experts: int = 0
    n_shared_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate: int = 0
    first_k_dense_replace: int = 0
    tied_embeddings: bool = False
    # DeepSeek sparse attention's lightning indexer (V3.2, V4): 0 heads means none.
    index_n_heads: int = 0
    index_head_dim: int = 0
    index_topk: int = 0
    # DeepSeek-V4 hybrid attention: per-layer compression (0: window only, 4, 128).
    sliding_window: int = 0
    compress_ratios: tuple[int, ...] = ()
    o_groups: int = 0
    o_lora_rank: int = 0
    hc_mult: int = 0
    """Parallel residual streams (manifold-constrained hyper-connections)."""
    nextn_layers: int = 0
    """Multi-token-prediction layers the weights carry beyond ``n_layers``. llama.cpp keeps
    them in the GGUF (V3.2) but loads them only to draft with, so they count for the
    checkpoint's size, not for memory."""

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    @property
    def has_indexer(self) -> bool:
        return self.index_n_heads > 0

    @property
    def is_dsv4(self) -> bool:
        return bool(self.compress_ratios)

    def ratio(self, layer: int) -> int:
        """A DeepSeek-V4 layer's compression ratio; 0 (window only) past the list."""
        return self.compress_ratios[layer] if 0 <= layer < len(self.compress_ratios) else 0

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.first_k_dense_replace if self.is_moe else 0

    @property
    def indexer_params(self) -> int:
        """The V3.2 lightning indexer of one layer: query up-projection, one key head and
        its LayerNorm, per-head weights."""
        if not self.has_indexer:
            return 0
        q = self.q_lora_rank * self.index_n_heads * self.index_head_dim
        k = self.hidden * self.index_head_dim + 2 * self.index_head_dim
        return q + k + self.hidden * self.index_n_heads

    def dsv4_attention_params(self, layer: int) -> int:
        """One DeepSeek-V4 layer's attention, as llama.cpp's loader shapes it: low-rank query,
        one shared key/value head, grouped low-rank output, sinks, hyper-connection mixers,
        and the compressor (and, at ratio 4, the indexer with its own compressor)."""
        q = self.hidden * self.q_lora_rank + self.q_lora_rank * self.n_heads * self.head_dim
        kv = self.hidden * self.head_dim
        out = self.n_heads * self.head_dim * self.o_lora_rank
        out += self.o_groups * self.o_lora_rank * self.hidden
        mix = (2 + self.hc_mult) * self.hc_mult
        hyper = 2 * (self.hc_mult * self.hidden * mix + mix + 3)
        total = q + kv + out + self.n_heads + hyper
        ratio = self.ratio(layer)
        if ratio:
            width = (2 if ratio == 4 else 1) * self.head_dim
            total += 2 * self.hidden * width + width * ratio
        if ratio == 4:
            width = 2 * self.index_head_dim
            total += self.hidden * self.index_n_heads
            total += self.q_lora_rank * self.index_n_heads * self.index_head_dim
            total += 2 * self.hidden * width + width * ratio
        return total

    @property
    def attention_params(self) -> int:
        """Weights of one layer's attention block (a DeepSeek-V4 layer without compression)."""
        if self.is_dsv4:
            return self.dsv4_attention_params(-1)
        if self.is_mla:
            qk_head = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (
                self.hidden * self.q_lora_rank + self.q_lora_rank * self.n_heads * qk_head
                if self.q_lora_rank
                else self.hidden * self.n_heads * qk_head
            )
            kv_a = self.hidden * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv_b = self.kv_lora_rank * self.n_heads * (self.qk_nope_head_dim + self.v_head_dim)
            out = self.n_heads * self.v_head_dim * self.hidden
            return q + kv_a + kv_b + out + self.indexer_params
        q_out = 2 * self.hidden * self.n_heads * self.head_dim
        return q_out + 2 * self.hidden * self.n_kv_heads * self.head_dim

    @property
    def expert_params(self) -> int:
        """One routed expert (gate, up, down)."""
        return 3 * self.hidden * self.moe_intermediate

    @property
    def dense_ffn_params(self) -> int:
        return 3 * self.hidden * self.intermediate

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def routed_expert_params(self) -> int:
        """All routed experts of the model: what ``--n-cpu-moe`` can keep in RAM."""
        return self.n_moe_layers * self.n_routed_experts * self.expert_params

    def moe_ffn_params(self, experts: int) -> int:
        """One MoE layer's feed-forward weights with ``experts`` routed experts."""
        shared = self.n_shared_experts * self.expert_params
        return experts * self.expert_params + shared + self.hidden * self.n_routed_experts

    def ffn_params(self, experts: int) -> int:
        """The feed-forward weights of all layers with ``experts`` routed experts each."""
        dense_layers = self.n_layers - self.n_moe_layers
        moe = self.n_moe_layers * self.moe_ffn_params(experts)
        return dense_layers * self.dense_ffn_params + moe

    @property
    def all_attention_params(self) -> int:
        if self.is_dsv4:
            return sum(self.dsv4_attention_params(il) for il in range(self.n_layers))
        return self.n_layers * self.attention_params

    @property
    def total_params(self) -> int:
        """Weights the engine loads (multi-token-prediction layers left out)."""
        layers = self.all_attention_params + self.ffn_params(self.n_routed_experts)
        return layers + self.embedding_params

    @property
    def checkpoint_params(self) -> int:
        """Weights the published checkpoint holds: each MTP layer is one more MoE layer plus
        its projection of [embedding; hidden state] and its own embedding and head copies."""
        ffn = self.moe_ffn_params(self.n_routed_experts) if self.is_moe else self.dense_ffn_params
        extra = 2 * self.hidden**2 + 2 * self.vocab * self.hidden
        return self.total_params + self.nextn_layers * (self.attention_params + ffn + extra)

    @property
    def active_params(self) -> int:
        """Weights one token passes through (MoE: only its routed experts)."""
        layers = self.all_attention_params + self.ffn_params(self.experts_per_token)
        return layers + self.embedding_params
