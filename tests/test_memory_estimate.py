"""The memory estimate against what llama-server 0.3.36 reported at ``-lv 4`` on this kind
of machine (benchmarks/plan_accuracy.py records the full grid), and once live."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from benchmarks.llama_server_run import run_server

from dsdeploy.catalog import find
from dsdeploy.engines import llamacpp_locate
from dsdeploy.engines.llamacpp_buffers import parse_buffers
from dsdeploy.model.architecture import Architecture
from dsdeploy.modelfile import read_gguf_layout
from dsdeploy.planner import kv_layout, memory
from dsdeploy.settings import Settings
from dsdeploy.store import Store

MIB = 2**20
SMOLLM2 = find("smollm2").architecture  # type: ignore[union-attr]
TINY_V3 = Architecture(  # as read from the tiny DeepSeek-V3 GGUF (benchmarks/tiny_checkpoints.py)
    n_layers=2, hidden=64, n_heads=4, n_kv_heads=1, head_dim=48, intermediate=128,
    vocab=129280, max_positions=4096, kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=16,
    qk_nope_head_dim=16, v_head_dim=16, n_routed_experts=4, n_shared_experts=1,
    experts_per_token=2, moe_intermediate=32, first_k_dense_replace=1,
)  # fmt: skip

TINY_V32 = replace(TINY_V3, index_n_heads=4, index_head_dim=64, index_topk=256)
"""The tiny DeepSeek-V3.2 GGUF: the same MLA + MoE, plus the sparse-attention indexer."""

TINY_V4 = Architecture(  # as read from the tiny DeepSeek-V4 GGUF (docs/design.md: how it was made)
    n_layers=4, hidden=64, n_heads=4, n_kv_heads=1, head_dim=64, intermediate=0, vocab=129280,
    max_positions=4096, q_lora_rank=32, n_routed_experts=4, n_shared_experts=1,
    experts_per_token=2, moe_intermediate=32, index_n_heads=4, index_head_dim=64,
    index_topk=64, sliding_window=128, compress_ratios=(0, 4, 128, 4, 0), o_groups=2,
    o_lora_rank=16, hc_mult=4,
)  # fmt: skip

# (ctx, slots, kv type, flash attention) -> MiB reported: KV, compute, output
SMOLLM2_REPORTED = {
    (512, 1, "f16", True): (11.25, 14.01, 0.19),
    (512, 4, "f16", False): (22.50, 13.63, 0.75),
    (2048, 4, "f16", True): (45.00, 14.01, 0.75),
    (2048, 1, "f16", False): (45.00, 46.38, 0.19),
    (8192, 1, "f16", False): (180.00, 166.38, 0.19),
    (8192, 1, "q8_0", True): (95.62, 20.42, 0.19),
    (8192, 4, "q8_0", True): (95.62, 14.42, 0.75),
}
TINY_V32_REPORTED = {  # KV: the MLA cache's line plus the indexer cache's (0.38 + 0.50 MiB)
    (2048, 1, "f16", True): (0.88, 11.00, 0.49),
    (2048, 4, "f16", True): (0.88, 4.53, 1.97),
    (8192, 1, "f16", False): (3.50, 123.00, 0.49),
}
TINY_V3_REPORTED = {
    (2048, 1, "f16", True): (0.38, 3.48, 0.49),
    (2048, 4, "f16", True): (0.38, 2.10, 1.97),
    (8192, 1, "f16", False): (1.50, 81.48, 0.49),
}


def within(estimate: int, reported_mib: float, share: float = 0.05, floor_mib: float = 16) -> bool:
    return abs(estimate / MIB - reported_mib) <= max(share * reported_mib, floor_mib)


def check(
    arch: Architecture, reported: dict[tuple[int, int, str, bool], tuple[float, ...]]
) -> None:
    for (ctx, slots, kv_type, fa), (kv, compute, output) in reported.items():
        kv_bytes = kv_layout.kv_cache_bytes(arch, ctx, slots, kv_type, kv_type).total
        compute_bytes = memory.compute_buffer_bytes(arch, ctx, slots, flash_attention=fa)
        rounding = 0.006 * (2 if arch.has_indexer else 1)  # one logged line per cache
        assert kv_bytes / MIB == pytest.approx(kv, abs=rounding), (ctx, slots, kv_type)
        assert memory.output_buffer_bytes(arch, slots) / MIB == pytest.approx(output, abs=0.006)
        assert within(compute_bytes, compute, 0.10, 1.2), (ctx, slots, kv_type, fa)


def test_smollm2_buffers_match_what_llama_server_reported() -> None:
    check(SMOLLM2, SMOLLM2_REPORTED)


def test_deepseek_v3_mla_moe_buffers_match_what_llama_server_reported() -> None:
    check(TINY_V3, TINY_V3_REPORTED)


def test_deepseek_v32_indexer_cache_and_compute_match_what_llama_server_reported() -> None:
    check(TINY_V32, TINY_V32_REPORTED)
    kv = kv_layout.kv_cache_bytes(TINY_V32, 2048, 1)
    assert (kv.k, kv.indexer) == (2 * 2048 * 48 * 2, 2 * 2048 * 64 * 2)  # 0.38 + 0.50 MiB


def test_deepseek_v4_cache_parts_match_what_llama_server_reported() -> None:
    # (ctx, slots) -> MiB of the window, CSA, HCA and indexer caches and of the three
    # compressor states, each from its own `-lv 4` line (llama_kv_cache_dsv4)
    reported = {
        (2048, 1): ((0.38, 0.12, 0.03, 0.12), (0.02, 0.06, 0.02), 5.65),
        (2048, 4): ((1.00, 0.25, 0.12, 0.25), (0.06, 0.25, 0.06), 4.78),
        (8192, 1): ((0.38, 0.50, 0.03, 0.50), (0.02, 0.06, 0.02), None),  # flash attention off
    }
    for (ctx, slots), (caches, states, compute) in reported.items():
        kv = kv_layout.kv_cache_bytes(TINY_V4, ctx, slots)
        window, csa, hca, indexer = caches
        assert kv.k / MIB == pytest.approx(window, abs=0.006)
        assert kv.compressed / MIB == pytest.approx(csa + hca, abs=0.011)
        assert kv.indexer / MIB == pytest.approx(indexer, abs=0.006)
        assert kv.state / MIB == pytest.approx(sum(states), abs=0.016)
        if compute is not None:  # plans always use flash attention
            estimate = memory.compute_buffer_bytes(TINY_V4, ctx, slots, flash_attention=True)
            assert compute <= estimate / MIB <= compute + 2


def test_mla_cache_keeps_only_the_latent_and_rope_key() -> None:
    kv = kv_layout.kv_cache_bytes(find("deepseek-r1").architecture, 4096, 1)  # type: ignore[arg-type]
    assert kv.v == 0
    assert kv.k == 61 * 4096 * (512 + 64) * 2  # 61 layers × cells × latent+rope × f16


def test_quantized_kv_uses_ggml_block_sizes() -> None:
    # q8_0: 32 values in 34 bytes; q4_0: 32 values in 18 bytes.
    assert kv_layout.row_bytes("q8_0", 192) == 6 * 34
    assert kv_layout.row_bytes("q4_0", 192) == 6 * 18


def test_slots_without_a_unified_cache_pad_each_stream_to_256_cells() -> None:
    assert kv_layout.kv_cells_per_slot(512, 4) == 256
    assert kv_layout.kv_cells_per_slot(512, 4, unified=True) == 512


def test_keeping_every_logit_costs_more_than_the_weights() -> None:
    every = memory.compute_buffer_bytes(SMOLLM2, 2048, 1, flash_attention=True, n_outputs=512)
    assert every > 92 * MIB  # 512 rows × 49152 vocab × f32 = 96 MiB of logits alone


def test_moe_decode_reads_only_the_active_experts() -> None:
    r1 = find("deepseek-r1")
    assert r1 is not None and r1.architecture is not None
    per_token = memory.bytes_read_per_token(r1.active_params, 4.9)
    assert per_token == pytest.approx(37e9 * 4.9 / 8)
    assert memory.decode_tokens_per_s_bound(3.35e12, per_token) == pytest.approx(147.9, rel=1e-3)


@pytest.mark.engine
def test_estimate_matches_a_live_llama_server(model_home: Path) -> None:
    settings = Settings(home=model_home)
    installed = llamacpp_locate.locate(settings.dirs, None, "cpu")
    assert installed is not None
    store = Store(settings.dirs.models)
    manifest = store.manifest("smollm2")
    assert manifest is not None
    path = store.weights_path(manifest)
    args = ["-c", "4096", "--parallel", "2", "--no-kv-unified", "-t", "1", "-fa", "on"]
    run = run_server(installed.binary, path, args)
    reported = parse_buffers(run.log)
    layout = read_gguf_layout(path)
    arch = layout.architecture
    assert layout.weight_bytes == pytest.approx(reported.model, abs=0.006 * MIB)
    kv_total = kv_layout.kv_cache_bytes(arch, 4096, 2).total
    assert kv_total == pytest.approx(reported.kv, abs=0.006 * MIB)
    compute = memory.compute_buffer_bytes(arch, 4096, 2, flash_attention=True)
    assert within(compute, reported.compute / MIB, 0.05, 1)
    kv = reported.kv
    rss = memory.resident_bytes_after_load(layout.weight_bytes, kv, reported.output, arch.vocab)
    assert within(rss, run.peak_rss / MIB, 0.15, 0)
