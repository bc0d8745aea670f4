"""The shape of a transformer, as far as memory and speed depend on it.

Filled from a catalog entry, a GGUF header or a Hugging Face config.json; the names follow
the config.json keys so a number can be checked against its source at a glance.
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

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.first_k_dense_replace if self.is_moe else 0

    @property
    def attention_params(self) -> int:
        """Weights of one layer's attention block."""
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
            return q + kv_a + kv_b + out
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

    def ffn_params(self, experts: int) -> int:
        """The feed-forward weights of all layers with ``experts`` routed experts each."""
        dense_layers = self.n_layers - self.n_moe_layers
        shared = self.n_shared_experts * self.expert_params
        moe_layer = experts * self.expert_params + shared + self.hidden * self.n_routed_experts
        return dense_layers * self.dense_ffn_params + self.n_moe_layers * moe_layer

    @property
    def total_params(self) -> int:
        layers = self.n_layers * self.attention_params + self.ffn_params(self.n_routed_experts)
        return layers + self.embedding_params

    @property
    def active_params(self) -> int:
        """Weights one token passes through (MoE: only its routed experts)."""
        layers = self.n_layers * self.attention_params + self.ffn_params(self.experts_per_token)
        return layers + self.embedding_params
