"""Reading a Hugging Face checkpoint's shape and bytes without loading its weights, checked
against the real transformers models (tiny random-weight DeepSeek-V3 and Llama)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.tiny_checkpoints import COMMON, MLA_MOE, V4, random_model

from dsdeploy.errors import StoreError
from dsdeploy.modelfile_hf import read_hf_layout
from tests.conftest import run_cli


def saved(kind: str, folder: Path) -> int:
    """Save a seeded tiny model; returns its parameter count as transformers counts it."""
    model = random_model(kind)
    model.save_pretrained(folder)
    return int(model.num_parameters())


@pytest.mark.parametrize("kind", ["deepseek-v3", "llama"])
def test_checkpoint_bytes_are_exact_and_parameter_formulas_match_transformers(
    tmp_path: Path, kind: str
) -> None:
    params = saved(kind, tmp_path)
    layout = read_hf_layout(tmp_path)
    # float32, plus the router's score-correction bias that DeepSeek-V3 saves as a buffer
    router_bias = MLA_MOE["n_routed_experts"] if kind == "deepseek-v3" else 0  # 1 MoE layer
    assert layout.weight_bytes == 4 * (params + router_bias)
    assert layout.architecture.total_params == pytest.approx(params, rel=0.005)
    assert (layout.expert_bytes > 0) == (kind == "deepseek-v3")


@pytest.mark.parametrize("kind", ["deepseek-v32", "deepseek-v4"])
def test_sparse_attention_parameter_formulas_match_transformers(tmp_path: Path, kind: str) -> None:
    params = saved(kind, tmp_path)
    arch = read_hf_layout(tmp_path).architecture
    assert arch.has_indexer and arch.is_dsv4 == (kind == "deepseek-v4")
    assert arch.total_params == pytest.approx(params, rel=0.005)
    if arch.is_dsv4:  # transformers saves the schedule as layer_types
        assert arch.compress_ratios == tuple(V4["compress_ratios"])


def test_mla_numbers_come_from_config_json(tmp_path: Path) -> None:
    saved("deepseek-v3", tmp_path)
    arch = read_hf_layout(tmp_path).architecture
    assert (arch.kv_lora_rank, arch.q_lora_rank, arch.qk_rope_head_dim) == (32, 48, 16)
    assert (arch.n_routed_experts, arch.experts_per_token, arch.first_k_dense_replace) == (4, 2, 1)


def test_an_index_alone_gives_the_size_before_any_shard_is_fetched(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(COMMON | {"intermediate_size": 128}))
    index = {"metadata": {"total_size": 123_456_789}, "weight_map": {}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert read_hf_layout(tmp_path).weight_bytes == 123_456_789


def test_a_folder_without_a_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="config.json"):
        read_hf_layout(tmp_path)


def test_plan_reads_a_checkpoint_folder(tmp_path: Path) -> None:
    saved("llama", tmp_path / "tiny-llama")
    done = run_cli(tmp_path, "plan", str(tmp_path / "tiny-llama"), "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["model"] == "tiny-llama"
    weights = next(c for c in plan["choices"] if c["what"] == "weights")
    assert "F32" in weights["value"] and "convert_hf_to_gguf" in weights["why"]
