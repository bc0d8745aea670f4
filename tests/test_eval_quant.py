"""``dsdeploy eval quant`` on the default model: quality falls as bits fall, each file holds
what its llama.cpp types say, and bad input is one line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGML_QUANT_SIZES, GGUFReader

from dsdeploy.eval.quant import Bounds, recommend
from dsdeploy.eval.quant_results import QuantRow, load_quant_eval
from dsdeploy.paths import Dirs
from tests.conftest import run_cli

SHORT_TEXT = ("--ctx", "128", "--chunks", "4")
"""512 tokens of the shipped text: enough to order the types, a few seconds per model."""


def home_dirs(home: Path) -> Dirs:
    return Dirs(data=home / "data", cache=home / "cache", config=home / "config")


def tensor_spans_on_disk(path: Path) -> list[tuple[int, int]]:
    """(bytes the tensor's type predicts, bytes it occupies in the file) for each tensor."""
    reader = GGUFReader(path)
    tensors = sorted(reader.tensors, key=lambda t: int(t.data_offset))
    spans = []
    for tensor, following in zip(tensors, [*tensors[1:], None], strict=True):
        block_size, type_size = GGML_QUANT_SIZES[tensor.tensor_type]
        predicted = int(tensor.n_elements) // block_size * type_size
        end = int(following.data_offset) if following else path.stat().st_size
        spans.append((predicted, end - int(tensor.data_offset)))
    return spans


@pytest.mark.engine
def test_kl_divergence_grows_as_bits_fall_and_sizes_follow_the_types(
    model_home: Path, tmp_path: Path
) -> None:
    kept = tmp_path / "quantized"
    args = ("--quant", "Q8_0", "--quant", "q4_k_m", "--quant", "Q2_K", "--keep", str(kept))
    done = run_cli(model_home, "eval", "quant", "smollm2", *args, *SHORT_TEXT)
    assert done.returncode == 0, done.stderr[-3000:]

    result = load_quant_eval(home_dirs(model_home), "smollm2")
    assert result is not None
    assert result.reference.description.startswith("F16 dequantized from the model's Q4_1")
    q8, q4, q2 = result.rows
    assert [q8.file_type, q4.file_type, q2.file_type] == ["Q8_0", "Q4_K_M", "Q2_K"]
    assert 0 < q8.mean_kld < q4.mean_kld < q2.mean_kld
    assert q8.same_top_p > q4.same_top_p > q2.same_top_p
    assert q8.size_bytes > q4.size_bytes > q2.size_bytes
    assert q8.bits_per_weight == pytest.approx(8.5, abs=0.05)  # Q8_0: 34 bytes per 32 weights
    assert result.recommendation
    assert (result.ctx, result.chunks) == (128, 4)
    assert (model_home / "data" / "evals" / "smollm2" / "quant.png").stat().st_size > 10_000

    for row in result.rows:
        path = kept / f"smollm2-{row.file_type}.gguf"
        assert path.stat().st_size == row.size_bytes
        for predicted, on_disk in tensor_spans_on_disk(path):
            assert predicted <= on_disk < predicted + 32  # GGUF aligns tensors to 32 bytes


@pytest.mark.engine
def test_unknown_quantization_is_one_line_naming_the_known_ones(model_home: Path) -> None:
    done = run_cli(model_home, "eval", "quant", "smollm2", "--quant", "Q9_X")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "does not know the quantization Q9_X" in lines[0]
    assert "Q4_K_M" in lines[0]


@pytest.mark.engine
def test_reference_with_no_more_bits_than_the_quantization_is_refused(
    model_home: Path, tmp_path: Path
) -> None:
    low = next((model_home / "data" / "models" / "blobs").glob("sha256-*"))  # Q4_1 weights
    done = run_cli(
        model_home, "eval", "quant", "smollm2", "--reference", str(low), "--quant", "Q8_0"
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "no higher-precision reference" in done.stderr
    assert "Q8_0" in done.stderr


@pytest.mark.engine
def test_unknown_model_is_one_line(model_home: Path) -> None:
    done = run_cli(model_home, "eval", "quant", "nosuchmodel")
    assert done.returncode == 1
    assert done.stderr.startswith("error: unknown model 'nosuchmodel'")


def quant_row(file_type: str, mib: int, kld: float, top1: float) -> QuantRow:
    return QuantRow(
        file_type=file_type, size_bytes=mib * 2**20, bits_per_weight=8.0, perplexity=10.0,
        perplexity_delta=0.0, mean_kld=kld, mean_kld_error=0.0, kld_p99=kld, same_top_p=top1,
    )  # fmt: skip


def test_recommendation_is_the_smallest_file_within_both_bounds() -> None:
    rows = [quant_row("Q8_0", 138, 0.005, 96), quant_row("Q4_K_M", 100, 0.04, 91),
            quant_row("Q2_K", 84, 0.4, 62)]  # fmt: skip
    picked, line = recommend(rows, Bounds(max_kld=0.05, min_same_top_p=90), [])
    assert picked == "Q4_K_M"
    assert "dequantized" not in line
    picked, line = recommend(rows, Bounds(max_kld=0.01, min_same_top_p=90), [])
    assert picked == "Q8_0"
    picked, line = recommend(rows, Bounds(max_kld=0.001, min_same_top_p=99), [])
    assert picked is None
    assert "the most faithful is Q8_0" in line


def test_recommending_the_type_the_reference_came_from_says_so() -> None:
    rows = [quant_row("Q8_0", 138, 0.005, 96), quant_row("Q4_1", 94, 0.003, 96)]
    picked, line = recommend(rows, Bounds(), ["Q4_1", "Q8_0"])
    assert picked == "Q4_1"
    assert "dequantized from Q4_1" in line
