"""``dsdeploy bench`` against the real server: every figure of the report is there and
sane, the raw engine can be measured beside the gateway, and bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from dsdeploy.bench.workload import Workload
from dsdeploy.errors import BenchError
from dsdeploy.modelfile import gguf_bytes_read_per_token
from tests.conftest import Server, free_port, run_cli

TINY = ("--concurrency", "1,2", "--reps", "1", "--max-tokens", "8", "--prompt-words", "16")


def read_report(folder: Path) -> dict[str, object]:
    assert (folder / "bench.png").stat().st_size > 10_000
    report: dict[str, object] = json.loads((folder / "bench.json").read_text())
    return report


@pytest.mark.engine
def test_bench_against_a_running_server_reports_latency_throughput_and_efficiency(
    shared_server: Server, tmp_path: Path
) -> None:
    target = f"dsdeploy={shared_server.base_url}"
    out = tmp_path / "run"
    done = run_cli(
        shared_server.home, "bench", "--target", target, "--model", "smollm2", *TINY,
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TTFT p99" in done.stdout and "η" in done.stdout
    report = read_report(out)
    rows = report["rows"]
    assert isinstance(rows, list)
    assert [(r["target"], r["concurrency"]) for r in rows] == [("dsdeploy", 1), ("dsdeploy", 2)]
    for row in rows:
        assert row["errors"] == 0
        assert row["requests"] == 4  # at least 4 requests per trial
        for measure in ("ttft_ms", "tpot_ms", "itl_ms"):
            spread = row[measure]
            assert 0 < spread["p50"] <= spread["p90"] <= spread["p99"]
        assert row["stream_tokens_per_s"] > 0
        assert row["aggregate_tokens_per_s"] > 0
        assert row["requests_per_s"] > 0
        assert 0 < row["efficiency"] < 1.5
    model = report["model"]
    assert isinstance(model, dict)
    assert len(model["sha256"]) == 64
    assert model["engine_version"]
    assert report["memory_bandwidth"] > 1e9
    assert report["ceiling_tokens_per_s"] == pytest.approx(
        report["memory_bandwidth"] / model["bytes_per_token"]
    )
    assert len(report["machine"]["load_average_before"]) == 3
    assert len(report["load_average_after"]) == 3
    assert isinstance(report["noisy"], bool)
    assert report["dsdeploy_revision"]
    trials = report["trials"]
    assert isinstance(trials, list)
    assert all(t["rep"] >= 0 for t in trials)  # the warm-up is not in the results
    priced = run_cli(
        shared_server.home, "cost", "smollm2", "--bench", str(out / "bench.json"),
        "--monthly-tokens", "10M", "--power-w", "65", "--electricity", "0.6",
        "--hardware-price", "5000", "--json", "--out", str(tmp_path / "cost"),
    )  # fmt: skip
    assert priced.returncode == 0, priced.stderr[-3000:]
    bought = json.loads(priced.stdout)["options"][0]
    assert bought["throughput"] == "measured"
    assert any("measured by dsdeploy bench" in note for note in bought["notes"])


@pytest.mark.engine
def test_compare_raw_measures_the_gateway_beside_its_own_engine(
    model_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = run_cli(model_home, "bench", "--compare-raw", *TINY, "--concurrency", "1",
                   "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = read_report(out)
    assert {r["target"] for r in report["rows"]} == {"dsdeploy", "llama-server"}
    assert "unix socket" in report["targets"]["llama-server"]
    assert all(r["errors"] == 0 and r["efficiency"] > 0 for r in report["rows"])


def test_unreachable_target_is_one_line_before_any_load(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = run_cli(tmp_path, "bench", "--target", f"nothing={url}", *TINY)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "unreachable" in done.stderr and "nothing" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--target", "no-equals-sign"), "write NAME=URL"),
        ((), "nothing to measure"),
        (("--target", "a=http://127.0.0.1:9", "--concurrency", "1,x"), "bad --concurrency"),
        (("--compare-raw", "--model", "nosuchmodel"), "unknown model 'nosuchmodel'"),
    ],
)
def test_bad_bench_arguments_are_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = run_cli(tmp_path, "bench", *args)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert message in done.stderr


def write_gguf(path: Path, tensors: dict[str, tuple[int, ...]], experts: tuple[int, int]) -> None:
    writer = GGUFWriter(path, "deepseek2")
    writer.add_expert_count(experts[0])
    writer.add_expert_used_count(experts[1])
    for name, shape in tensors.items():
        writer.add_tensor(name, np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_bytes_per_token_gathers_one_embedding_row_and_only_the_experts_used(
    tmp_path: Path,
) -> None:
    path = tmp_path / "moe.gguf"
    tensors = {
        "token_embd.weight": (100, 16),  # 100 rows of 16 float32
        "output.weight": (100, 16),
        "blk.0.attn_q.weight": (16, 16),
        "blk.0.ffn_up_exps.weight": (8, 32, 16),  # 8 experts, 2 used per token
    }
    write_gguf(path, tensors, experts=(8, 2))
    assert gguf_bytes_read_per_token(path) == 4 * (16 + 100 * 16 + 16 * 16 + 2 * 32 * 16)


def test_tied_output_weights_read_the_whole_embedding_table(tmp_path: Path) -> None:
    path = tmp_path / "tied.gguf"
    write_gguf(path, {"token_embd.weight": (100, 16), "blk.0.attn_q.weight": (16, 16)}, (0, 0))
    assert gguf_bytes_read_per_token(path) == 4 * (100 * 16 + 16 * 16)


def test_unique_prompts_never_share_a_prefix_and_shared_ones_do() -> None:
    unique = Workload(prompt_words=64, max_tokens=8, shared_prefix=False)
    shared = Workload(prompt_words=64, max_tokens=8, shared_prefix=True)
    first_words = {tuple(unique.prompt(i).split()[:3]) for i in range(40)}
    assert len(first_words) == 40  # every request starts somewhere else in the text
    passages = {shared.prompt(i).split("\n\nRequest")[0] for i in range(40)}
    assert len(passages) == 1
    assert shared.prompt(1) != shared.prompt(2)  # each still asks its own question
    body = unique.body("smollm2", 0)
    assert body["ignore_eos"] is True and body["stream"] is True


def test_a_workload_too_long_for_the_text_is_refused() -> None:
    with pytest.raises(BenchError, match="--prompt-words must be between"):
        Workload(prompt_words=10**6, max_tokens=8, shared_prefix=False)
