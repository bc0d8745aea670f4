"""Every benchmark script still runs: its quick mode finishes and writes its JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.gateway_overhead import HistogramReading

from tests.conftest import dsdeploy_env

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "results"


def run_quick(script: str, home: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        env=dsdeploy_env(home),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = RESULTS / script.replace(".py", ".quick.json")
    result: dict[str, object] = json.loads(written.read_text())
    return result


@pytest.mark.engine
def test_plan_accuracy_quick_mode_measures_smollm2_and_a_tiny_deepseek(
    engine_installed: None, isolated_home: Path
) -> None:
    result = run_quick("plan_accuracy.py", isolated_home)
    models = {row["case"]["model"] for row in result["rows"]}  # type: ignore[union-attr]
    assert models == {"smollm2", "tiny-deepseek-v3"}


@pytest.mark.engine
def test_tiny_architectures_quick_mode_converts_quantizes_and_loads_a_tiny_deepseek_v3(
    engine_installed: None, isolated_home: Path
) -> None:
    result = run_quick("tiny_architectures.py", isolated_home)
    [row] = result["rows"]  # type: ignore[misc]
    assert row["arch"] == "deepseek-v3" and row["quantized"] and row["loaded"]
    assert row["estimate"]["model"] == pytest.approx(row["measured"]["model"], abs=0.01)
    assert row["estimate"]["kv"] == pytest.approx(row["measured"]["kv"], abs=0.01)


def test_pull_throughput_quick_mode_compares_with_curl(isolated_home: Path) -> None:
    result = run_quick("pull_throughput.py", isolated_home)
    assert result["size_mib"] == 64


@pytest.mark.engine
def test_gateway_overhead_quick_mode_compares_raw_and_gateway_with_a_hook(
    model_home: Path,
) -> None:
    result = run_quick("gateway_overhead.py", model_home)
    rows = result["summary"]
    assert [row["concurrency"] for row in rows] == [1, 2]  # type: ignore[union-attr]
    assert all(row["errors"] == 0 for row in rows)  # type: ignore[union-attr]


def test_the_gateway_time_median_is_interpolated_within_its_bucket_as_prometheus_does() -> None:
    earlier = HistogramReading(0.004, 4, {0.001: 2, 0.002: 2, 0.003: 4, math.inf: 4})
    later = HistogramReading(0.02, 14, {0.001: 4, 0.002: 8, 0.003: 14, math.inf: 14})
    reading = later.since(earlier)
    assert reading.count == 10
    assert reading.mean_ms() == pytest.approx(1.6)
    # rank 5 of 10 falls in (1, 2] ms, which holds the 3rd to 6th: three quarters in
    assert reading.quantile_ms(0.5) == pytest.approx(1.75)
    assert reading.quantile_ms(1.0) == pytest.approx(3.0)


def test_limits_overhead_quick_mode_measures_memory_and_redis(isolated_home: Path) -> None:
    result = run_quick("limits_overhead.py", isolated_home)
    cases = [row["case"] for row in result["rows"]]  # type: ignore[union-attr]
    assert cases == [
        "no key (caps, queue bound)",
        "key, memory",
        "key, limits' own memory store",
        "key, Redis",
    ]
    assert all(row["burst_of_16_median_ms"] > 0 for row in result["rows"])  # type: ignore[union-attr]


def test_auth_overhead_quick_mode_measures_cached_and_uncached_checks(
    isolated_home: Path,
) -> None:
    result = run_quick("auth_overhead.py", isolated_home)
    assert result["backend"] == "sqlite"
    assert set(result) >= {
        "cache_hit_us",
        "store_verify_us",
        "middleware_uncached_us",
        "middleware_throttled_us",
    }


@pytest.mark.engine
def test_crypto_quick_mode_measures_throughput_and_serve_start_plain_and_encrypted(
    model_home: Path,
) -> None:
    result = run_quick("crypto.py", model_home)
    assert result["size_mib"] == 256
    assert all(v > 0 for v in result["encrypt_mib_per_s"])  # type: ignore[attr-defined]
    assert set(result["median_serve_start_s"]) == {"plain", "encrypted"}  # type: ignore[arg-type]


def test_model_check_quick_mode_times_a_deepseek_shaped_header(isolated_home: Path) -> None:
    result = run_quick("model_check.py", isolated_home)
    files = [row["file"] for row in result["rows"]]  # type: ignore[union-attr]
    assert files == ["DeepSeek-V3-shaped Q4_K, 4 layers", "safetensors shard, 1500 tensors"]


def test_redactor_quick_mode_scores_each_candidate_on_every_kind(isolated_home: Path) -> None:
    result = run_quick("redactor.py", isolated_home)
    rows = {row["candidate"]: row for row in result["rows"]}  # type: ignore[union-attr]
    assert {"patterns", "patterns+names"} <= set(rows)
    chosen = rows["patterns+names"]["kinds"]
    assert set(chosen) == {"id", "phone", "email", "card", "ip", "name"}
    assert chosen["id"]["recall"] == 1.0


def test_audit_writer_quick_mode_measures_the_request_path_and_the_write_rate(
    isolated_home: Path,
) -> None:
    result = run_quick("audit_writer.py", isolated_home)
    assert result["request_path_us"]["cpu_us"] > 0  # type: ignore[index]
    assert all(rate["intact"] for rate in result["rates"])  # type: ignore[union-attr]


def test_metrics_cost_quick_mode_times_the_hook_and_the_usage_read(isolated_home: Path) -> None:
    result = run_quick("metrics_cost.py", isolated_home)
    assert 0 < result["hook_us_per_request"] < 10_000  # type: ignore[operator]
    assert result["read_usage_us_per_stream"] < result["parse_all_8kib_us_per_stream"]  # type: ignore[operator]


def test_reasoning_cost_quick_mode_times_the_hook_per_token(isolated_home: Path) -> None:
    result = run_quick("reasoning_cost.py", isolated_home)
    for name in ("no_op_hook", "split_both", "rename_both", "rename_same_field"):
        assert 0 < result[f"{name}_us_per_token"] < 10_000  # type: ignore[operator]


@pytest.mark.engine
def test_soak_quick_mode_switches_models_and_reports_memory_errors_and_latency(
    model_home: Path,
) -> None:
    result = run_quick("soak.py", model_home)
    assert result["errors"] == 0, result["errors_by_kind"]
    assert result["expected_4xx"] > 0
    switched = {entry["model"] for entry in result["model_switches"]}  # type: ignore[attr-defined]
    assert switched == {"smollm2", "smollm2-copy"}
    gateway = [row for row in result["processes"] if row["process"] == "gateway"]  # type: ignore[attr-defined]
    assert isinstance(gateway[0]["slope_mib_per_hour"], float)
    assert len(result["windows"]) == 6  # type: ignore[arg-type]
    assert result["serve_exit"] == 0
    assert result["serve_log"]["not_json"] == 0  # type: ignore[index]
    assert (RESULTS / "soak.quick.png").stat().st_size > 0


def test_log_cost_quick_mode_times_an_access_line_as_text_and_json(isolated_home: Path) -> None:
    result = run_quick("log_cost.py", isolated_home)
    formats = [row["format"] for row in result["rows"]]  # type: ignore[union-attr]
    assert formats == ["text", "json"]
    assert all(0 < row["best_us"] < 10_000 for row in result["rows"])  # type: ignore[union-attr]


def test_transformers_engine_quick_mode_measures_both_batchings(isolated_home: Path) -> None:
    result = run_quick("transformers_engine.py", isolated_home)
    rows = result["rows"]
    assert [(r["batching"], r["concurrency"]) for r in rows] == [  # type: ignore[union-attr]
        ("continuous", 1),
        ("continuous", 4),
        ("sequential", 1),
        ("sequential", 4),
    ]
    assert all(r["tokens"] > 0 for r in rows)  # type: ignore[union-attr]


@pytest.mark.engine
def test_finetune_format_quick_mode_trains_serves_and_scores_base_and_adapter(
    model_home: Path,
) -> None:
    result = run_quick("finetune_format.py", model_home)
    assert result["held_out_prompts"] == 3
    assert 0 <= float(result["adapter_follow_rate"]) <= 1  # type: ignore[arg-type]
    assert int(result["peak_rss_mib"]) > 0 and int(result["planned_mib"]) > 0  # type: ignore[call-overload]
