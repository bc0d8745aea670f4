"""What ``dsdeploy plan`` chooses, why, and how it refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdeploy.catalog import entries, find
from dsdeploy.catalog.gpus import find_gpu
from dsdeploy.errors import ConfigError
from dsdeploy.eval.quant_results import QuantEval, QuantRow, Reference, save_quant_eval
from dsdeploy.planner.machine import parse_size
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import Asked, Plan, make_plan
from dsdeploy.settings import Settings
from tests.conftest import run_cli

GIB = 2**30
THIS_KIND = Machine(ram_available=20 * GIB, physical_cores=2, cpu_bandwidth=25e9)


def gpu_machine(name: str, count: int, ram: int = 64 * GIB) -> Machine:
    spec = find_gpu(name)
    return Machine(ram, 32, 200e9, spec.name, spec.memory, count, spec.bandwidth)


def plan_for(model: str, machine: Machine, **asked: int) -> Plan:
    entry = find(model)
    assert entry is not None
    return make_plan(entry, machine, Asked(**asked))  # type: ignore[arg-type]


def choice(plan: Plan, what: str) -> str:
    return next(c.value for c in plan.choices if c.what == what)


def test_every_choice_comes_with_a_reason() -> None:
    plan = plan_for("deepseek-r1-distill-qwen-7b", THIS_KIND)
    assert plan.choices and all(c.why for c in plan.choices)


def test_a_7b_distill_on_a_cpu_box_runs_on_llama_cpp_at_the_best_quant_that_fits() -> None:
    plan = plan_for("deepseek-r1-distill-qwen-7b", THIS_KIND)
    assert (plan.engine, plan.fits) == ("llama.cpp", True)
    assert choice(plan, "weights") == "GGUF Q8_0"
    assert plan.memory["ram"] <= THIS_KIND.ram_available - GIB
    assert 1 < plan.decode_tokens_per_s_bound < 5  # 25 GB/s ÷ 8 GB per token
    assert any(n.startswith("speed over quality: Q4_K_M") for n in plan.notes)


def test_less_ram_means_a_smaller_quant_not_a_failure() -> None:
    small = Machine(ram_available=7 * GIB, physical_cores=2, cpu_bandwidth=25e9)
    plan = plan_for("deepseek-r1-distill-qwen-7b", small)
    assert plan.fits
    assert choice(plan, "weights") in {"GGUF Q5_K_M", "GGUF Q4_K_M"}


def test_below_4_bit_comes_with_its_quality_cost() -> None:
    tight = Machine(ram_available=int(4.2 * GIB), physical_cores=2, cpu_bandwidth=25e9)
    plan = plan_for("deepseek-r1-distill-qwen-7b", tight)
    assert plan.fits
    assert any("below 4-bit" in w and "perplexity" in w for w in plan.warnings)


def test_671b_on_one_8x_h100_node_serves_4_bit_on_vllm_and_says_what_8_bit_needs() -> None:
    plan = plan_for("deepseek-r1", gpu_machine("H100", 8))
    assert (plan.engine, plan.fits) == ("vllm", True)
    assert choice(plan, "weights") == "AWQ-INT4"
    assert choice(plan, "tensor parallel") == "8"
    assert any("on 2 node(s) × 8 × H100 SXM" in w for w in plan.warnings)


def test_671b_on_8x_h200_fits_at_fp8() -> None:
    plan = plan_for("deepseek-r1", gpu_machine("H200", 8))
    assert choice(plan, "weights") == "FP8"


def test_671b_on_a_gaming_gpu_keeps_experts_in_ram() -> None:
    plan = plan_for("deepseek-r1", gpu_machine("RTX 4090", 1, ram=256 * GIB))
    assert (plan.engine, plan.fits) == ("llama.cpp", True)
    assert choice(plan, "MoE experts on CPU").startswith("--n-cpu-moe ")
    assert plan.memory["gpu"] <= find_gpu("RTX 4090").memory


def test_671b_on_this_machine_says_by_how_much_and_what_would_run_it() -> None:
    plan = plan_for("deepseek-r1", THIS_KIND)
    assert not plan.fits
    assert plan.shortfall > 100 * GIB
    assert "RAM" in plan.scale_out
    assert plan.choices  # the nearest plan is still shown


def test_a_fixed_context_is_capped_at_the_trained_one() -> None:
    plan = plan_for("smollm2", THIS_KIND, ctx=100_000)
    assert choice(plan, "context") == "8192 tokens per slot"


def test_catalog_numbers_add_up_to_the_published_parameter_counts() -> None:
    for entry in entries():
        assert entry.architecture is not None, entry.name
        assert entry.provenance.startswith("https://"), entry.name
        published = entry.architecture.checkpoint_params  # MTP layers count on the model card
        assert published == pytest.approx(entry.total_params, rel=0.02), entry.name
        assert entry.architecture.active_params == pytest.approx(entry.active_params, rel=0.11)


def test_sizes_read_like_ram_is_sold() -> None:
    assert parse_size("64G") == 64 * GIB
    assert parse_size("512MiB") == 512 * 2**20
    for bad in ("lots", "-4G", "0G", "12X"):
        with pytest.raises(ConfigError):
            parse_size(bad)


def test_plan_json_holds_the_choices(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "plan", "smollm2", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["engine"] == "llama.cpp"
    assert {c["what"] for c in plan["choices"]} >= {"weights", "context", "threads"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["plan", "deepseek-r9"], "known models: deepseek-coder-v2-lite"),
        (["plan", "smollm2", "--gpu", "RTX 9999"], "known GPUs: RTX 3090"),
        (["plan", "smollm2", "--ram", "lots"], "write it like 64G"),
        (["plan", "smollm2", "--gpu", "H100", "--gpus", "0"], "--gpus must be at least 1"),
        (["plan", "smollm2", "--ctx", "5"], "--ctx must be at least 128"),
    ],
)
def test_bad_input_is_one_line_naming_what_exists(
    tmp_path: Path, args: list[str], says: str
) -> None:
    done = run_cli(tmp_path, *args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert says in lines[0]


def test_plan_shows_quality_measured_here_next_to_its_quantization(tmp_path: Path) -> None:
    row = {
        "file_type": "Q4_1",
        "size_bytes": 98_362_432,
        "bits_per_weight": 5.0,
        "perplexity": 27.9,
        "perplexity_delta": 0.514,
        "mean_kld": 0.0031,
        "mean_kld_error": 0.0001,
        "kld_p99": 0.03,
        "same_top_p": 95.8,
    }
    result = QuantEval(
        model="smollm2",
        model_sha256="0" * 64,
        engine_version="test",
        created="2026-01-02T03:04:05+00:00",
        text="a text",
        ctx=512,
        chunks=None,
        reference=Reference(
            description="F16 reference", size_bytes=1, bits_per_weight=16.0, perplexity=27.4
        ),
        rows=[QuantRow.model_validate(row)],
        recommended="Q4_1",
        recommendation="Q4_1: smallest within bounds",
    )
    save_quant_eval(Settings(home=tmp_path).dirs, result)
    done = run_cli(tmp_path, "plan", "smollm2", "--json")
    assert done.returncode == 0, done.stderr
    notes = " ".join(json.loads(done.stdout)["notes"])
    assert "measured here by `dsdeploy eval quant` (2026-01-02)" in notes
    assert "Q4_1 mean KL divergence 0.0031, top-1 agreement 95.8%, perplexity +0.514" in notes
