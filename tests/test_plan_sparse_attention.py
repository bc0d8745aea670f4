"""Plans for DeepSeek-V3.2 (sparse attention: a lightning indexer with its own key cache) and
DeepSeek-V4 (a raw-token window, 4× and 128× compressed caches, compressor state), each part
checked against a hand computation from the config.json numbers, the llama.cpp code they
follow named beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFWriter

from dsdeploy.catalog import find
from dsdeploy.errors import SourceError, UnsizedArchitecture
from dsdeploy.modelfile import read_gguf_layout
from dsdeploy.modelfile_hf import architecture_from_config
from dsdeploy.planner.kv_layout import kv_bytes_per_token, kv_cache_bytes
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import Asked, make_plan
from dsdeploy.planner.quants import gguf_quant
from dsdeploy.pull import target
from tests.conftest import run_cli

GIB = 2**30
F16 = 2
Q8_0_ROW = 34 / 32  # bytes per value: 32 values in 34 bytes
BIG_CPU = Machine(ram_available=1024 * GIB, physical_cores=32, cpu_bandwidth=200e9)

# Transcribed from the configs by hand (not read from the catalog), so the catalog is checked.
V32_LAYERS, V32_LATENT, V32_INDEX_DIM = 61, 512 + 64, 128
FLASH_LAYERS, FLASH_HEAD, FLASH_INDEX_DIM, FLASH_WINDOW = 43, 512, 128, 128
FLASH_CSA, FLASH_HCA = 21, 20  # compress_ratios: 0, 0, then 4 and 128 alternating


def arch(name: str) -> Any:
    entry = find(name)
    assert entry is not None and entry.architecture is not None
    return entry.architecture


def test_v32_cache_is_the_mla_latent_plus_one_indexer_key_per_token_and_layer() -> None:
    # 2 slots × 8192 cells (llama_kv_cache_dsa: the MLA cache and a 1-head indexer cache)
    kv = kv_cache_bytes(arch("deepseek-v3.2"), 16384, 2)
    cells = 2 * 8192
    assert kv.k == V32_LAYERS * cells * V32_LATENT * F16
    assert kv.indexer == V32_LAYERS * cells * V32_INDEX_DIM * F16
    assert (kv.v, kv.compressed, kv.state) == (0, 0, 0)
    q8 = kv_cache_bytes(arch("deepseek-v3.2"), 16384, 2, "q8_0", "q8_0")
    assert q8.indexer == V32_LAYERS * cells * V32_INDEX_DIM * Q8_0_ROW  # same type as K


def test_v4_flash_cache_parts_follow_llama_kv_cache_dsv4() -> None:
    kv = kv_cache_bytes(arch("deepseek-v4-flash"), 8192, 1)
    window = 768  # pad256(min(8192 cells, 128 window + 512 ubatch))
    csa_rows, hca_rows = 2048, 256  # pad256(8192 / 4), pad256(8192 / 128)
    assert kv.k == FLASH_LAYERS * window * FLASH_HEAD * F16
    assert kv.v == 0  # one head read as both K and V
    assert kv.compressed == (FLASH_CSA * csa_rows + FLASH_HCA * hca_rows) * FLASH_HEAD * F16
    assert kv.indexer == FLASH_CSA * csa_rows * FLASH_INDEX_DIM * F16
    state = FLASH_CSA * 2 * 8 * 2 * FLASH_HEAD  # kv + score, 2·ratio rows of 2·head_dim
    state += FLASH_HCA * 2 * 128 * FLASH_HEAD  # ratio rows of head_dim
    state += FLASH_CSA * 2 * 8 * 2 * FLASH_INDEX_DIM
    assert kv.state == state * 4  # f32
    assert kv_cache_bytes(arch("deepseek-v4-flash"), 16384, 2).total == 2 * kv.total


def test_v4_context_costs_compressed_rows_only_beyond_the_window() -> None:
    flash = arch("deepseek-v4-flash")
    per_token = (FLASH_CSA * (FLASH_HEAD + FLASH_INDEX_DIM) / 4 + FLASH_HCA * FLASH_HEAD / 128) * 2
    assert kv_bytes_per_token(flash) == per_token == 6880
    v32 = kv_bytes_per_token(arch("deepseek-v3.2"))
    assert v32 == V32_LAYERS * (V32_LATENT + V32_INDEX_DIM) * 2
    assert v32 / per_token > 12  # what V4's compression buys per token of context


def test_v32_plan_on_a_big_cpu_box_matches_the_hand_computation() -> None:
    entry = find("deepseek-v3.2")
    assert entry is not None
    quant = gguf_quant("Q4_K_M")
    plan = make_plan(entry, BIG_CPU, Asked(ctx=8192, slots=2, quants=(quant,)))
    assert (plan.engine, plan.fits) == ("llama.cpp", True)
    # 685B on the model card counts the MTP module, which llama-server does not load:
    h, vocab = 7168, 129280
    attention = h * 1536 + 1536 * 128 * 192 + h * 576 + 512 * 128 * 256 + 128 * 128 * h
    indexer = 1536 * 64 * 128 + h * 128 + 2 * 128 + h * 64
    moe = 257 * 3 * h * 2048 + h * 256
    mtp = attention + indexer + moe + 2 * h * h + 2 * vocab * h
    assert plan.memory["weights"] == int((685e9 - mtp) * quant.bits_per_weight / 8)
    cells = 2 * 8192
    assert plan.kv_parts == {
        "k": V32_LAYERS * cells * V32_LATENT * F16,
        "indexer": V32_LAYERS * cells * V32_INDEX_DIM * F16,
    }
    assert plan.memory["kv_cache"] == sum(plan.kv_parts.values())
    assert any(n.startswith("KV cache: MLA latent") and "2048 cells" in n for n in plan.notes)


def test_v4_flash_plan_here_keeps_its_published_ggufs_in_the_notes() -> None:
    entry = find("deepseek-v4-flash")
    assert entry is not None
    plan = make_plan(entry, BIG_CPU, Asked(ctx=32768, slots=1))
    assert (plan.engine, plan.fits) == ("llama.cpp", True)
    assert set(plan.kv_parts) == {"k", "indexer", "compressed", "state"}
    assert plan.memory["kv_cache"] < GIB  # a 32k context; V3.2 needs 2.6 GiB at f16
    notes = " ".join(plan.notes)
    assert "antirez/deepseek-v4-gguf" in notes and "21 layers" in notes


@pytest.mark.parametrize(
    ("model", "weights", "per_token"),
    [("deepseek-v3.2", "FP8", 85_888), ("deepseek-v4-flash", "FP4+FP8", 6_880)],
)
def test_what_if_8_h200_serves_on_vllm_and_says_why(
    tmp_path: Path, model: str, weights: str, per_token: int
) -> None:
    done = run_cli(tmp_path, "plan", model, "--gpu", "H200", "--gpus", "8", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    choices = {c["what"]: c for c in plan["choices"]}
    assert (plan["engine"], plan["fits"]) == ("vllm", True)
    assert choices["weights"]["value"] == weights
    assert choices["tensor parallel"]["value"] == "8"
    assert "8 × H200" in choices["engine"]["why"] and "KV pool" in choices["engine"]["why"]
    assert plan["memory"]["kv_bytes_per_token"] == per_token


def test_v4_on_vllm_is_planned_in_its_released_fp4_experts() -> None:
    entry = find("deepseek-v4-flash")
    assert entry is not None
    h200 = Machine(1024 * GIB, 32, 200e9, "H200", 141 * 10**9, 8, 4.8e12)
    plan = make_plan(entry, h200)
    experts = 43 * 256 * 3 * 4096 * 2048
    share = experts / entry.architecture.total_params  # type: ignore[union-attr]
    bits = share * 4.25 + (1 - share) * 8  # FP4 with a scale per 32 values; FP8
    assert plan.memory["weights"] == pytest.approx(284e9 * bits / 8, rel=1e-9)
    assert 150e9 < plan.memory["weights"] < 160e9  # the released checkpoint is about that


def test_v4_flash_on_this_kind_of_box_says_what_is_missing(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "plan", "deepseek-v4-flash", "--ram", "16G", "--json")
    assert done.returncode == 3, done.stderr  # does not fit
    plan = json.loads(done.stdout)
    assert plan["shortfall"] > 80 * GIB
    assert "RAM" in plan["scale_out"]


def write_gguf(path: Path, arch_name: str, keys: dict[str, Any], tensors: dict[str, int]) -> Path:
    writer = GGUFWriter(path, arch_name)
    writer.add_token_list([f"t{i}" for i in range(8)])
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    for key, value in keys.items():
        full = f"{arch_name}.{key}"
        if isinstance(value, list):
            writer.add_array(full, value)
        else:
            writer.add_uint32(full, value)
    for name, size in tensors.items():
        writer.add_tensor(name, np.zeros(size, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_deepseek32_gguf_is_read_with_its_indexer_and_without_its_mtp_layer(
    tmp_path: Path,
) -> None:
    keys = {
        "block_count": 3,
        "nextn_predict_layers": 1,
        "attention.kv_lora_rank": 32,
        "rope.dimension_count": 16,
        "attention.indexer.head_count": 4,
        "attention.indexer.key_length": 64,
        "attention.indexer.top_k": 256,
    }
    tensors = {"blk.0.attn_norm.weight": 64, "blk.1.attn_norm.weight": 64}
    tensors["blk.2.attn_norm.weight"] = 1000  # the MTP layer: in the file, not loaded
    layout = read_gguf_layout(write_gguf(tmp_path / "v32.gguf", "deepseek32", keys, tensors))
    got = layout.architecture
    assert (got.n_layers, got.nextn_layers) == (2, 1)
    assert (got.index_n_heads, got.index_head_dim, got.index_topk) == (4, 64, 256)
    assert layout.weight_bytes == 2 * 64 * 4


def test_a_deepseek4_gguf_is_read_with_its_compression_schedule(tmp_path: Path) -> None:
    keys = {
        "block_count": 4,
        "attention.key_length": 128,
        "attention.head_count_kv": 1,
        "attention.sliding_window": 128,
        "attention.compress_ratios": [0, 4, 128, 4, 0],
        "attention.indexer.head_count": 4,
        "attention.indexer.key_length": 64,
        "hyper_connection.count": 4,
    }
    path = write_gguf(tmp_path / "v4.gguf", "deepseek4", keys, {"output_norm.weight": 64})
    got = read_gguf_layout(path).architecture
    assert got.compress_ratios == (0, 4, 128, 4, 0)
    assert (got.sliding_window, got.hc_mult, got.head_dim, got.n_kv_heads) == (128, 4, 128, 1)
    assert kv_cache_bytes(got, 4096, 1).compressed == (2 * 1024 + 256) * 128 * F16


def test_a_cache_layout_the_planner_does_not_model_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    keys = {"block_count": 2, "ssm.state_size": 16, "ssm.conv_kernel": 4}
    path = write_gguf(tmp_path / "hybrid.gguf", "mamba2", keys, {"output_norm.weight": 64})
    with pytest.raises(UnsizedArchitecture, match="'mamba2'.*ssm"):
        read_gguf_layout(path)
    done = run_cli(tmp_path, "plan", str(path))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: hybrid.gguf: dsdeploy cannot size")


def test_an_unknown_model_name_lists_the_new_ones(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "plan", "deepseek-v5")
    assert done.returncode == 1
    for name in (
        "deepseek-v3.2",
        "deepseek-v4-flash",
        "deepseek-v4-pro",
        "deepseek-r1-0528-qwen3-8b",
    ):
        assert name in done.stderr


def test_transformers_v4_config_gives_the_schedule_as_layer_types() -> None:
    config = {
        "model_type": "deepseek_v4",
        "num_attention_heads": 4,
        "hidden_size": 64,
        "num_hidden_layers": 3,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "moe_intermediate_size": 32,
        "vocab_size": 1000,
        "max_position_embeddings": 4096,
        "sliding_window": 128,
        "layer_types": [
            "sliding_attention",
            "compressed_sparse_attention",
            "heavily_compressed_attention",
        ],
        "compress_rates": {"compressed_sparse_attention": 4, "heavily_compressed_attention": 128},
    }
    got = architecture_from_config(config)
    assert got.compress_ratios == (0, 4, 128)
    assert got.intermediate == 32
    config["model_type"] = "some_new_moe"
    with pytest.raises(UnsizedArchitecture, match="compress_rates"):
        architecture_from_config(config)


def test_pull_names_map_to_their_hub_repos() -> None:
    qwen3 = target("deepseek-r1-0528-qwen3-8b", None, "Q4_K_M")
    assert qwen3.source == (
        "hf:unsloth/DeepSeek-R1-0528-Qwen3-8B-GGUF:DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf"
    )
    for name, repo in [
        ("deepseek-v3.2", "deepseek-ai/DeepSeek-V3.2"),
        ("DeepSeek-V4-Flash", "deepseek-ai/DeepSeek-V4-Flash"),
        ("deepseek-v4-pro", "deepseek-ai/DeepSeek-V4-Pro"),
    ]:
        pulled = target(name, None, None)
        assert (pulled.source, pulled.format) == (f"hf:{repo}", "safetensors")
        assert pulled.architecture is not None
    assert target("DeepSeek-V4-Flash", None, None).name == "deepseek-v4-flash"  # hub spelling
    with pytest.raises(SourceError, match="no published GGUF that this llama.cpp loads"):
        target("deepseek-v4-flash", None, "Q4_K_M")
