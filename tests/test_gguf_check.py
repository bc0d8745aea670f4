"""The GGUF structure check: the real default model passes, and hundreds of malformed
copies of it (truncated, lying counts and lengths, unknown types, bad shapes, misplaced or
overlapping tensors, an inconsistent vocabulary) are each refused with a one-line reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsdeploy.errors import ModelFileRejected
from dsdeploy.model import file_checks
from dsdeploy.model.file_checks import ModelChecks, check_entry
from dsdeploy.model.gguf_check import check_gguf_files, check_gguf_model
from tests.gguf_mutations import Anatomy, all_mutations, dissect, write_copy
from tests.hub_models import split_gguf, tiny_gguf


@pytest.fixture(scope="session")
def smollm2_file(smollm2_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    path.write_bytes(smollm2_bytes)
    return path


@pytest.fixture(scope="session")
def anatomy(smollm2_file: Path) -> Anatomy:
    return dissect(smollm2_file)


def refusal(path: Path) -> str | None:
    try:
        check_gguf_model(path)
    except ModelFileRejected as exc:
        return str(exc)
    return None


def test_the_default_model_passes(smollm2_file: Path) -> None:
    check_gguf_model(smollm2_file)


def test_a_copy_with_its_weights_as_a_hole_passes(anatomy: Anatomy, tmp_path: Path) -> None:
    """The mutated copies below differ from this one only by their edit."""
    path = tmp_path / "copy.gguf"
    write_copy(path, anatomy.header, anatomy.data_bytes)
    assert refusal(path) is None


def test_every_mutated_copy_is_refused_with_a_one_line_reason(
    anatomy: Anatomy, tmp_path: Path
) -> None:
    mutations = all_mutations(anatomy)
    assert len(mutations) >= 200
    accepted, unclear = [], []
    path = tmp_path / "mutated.gguf"
    for mutation in mutations:
        cut = mutation.cut(anatomy) if mutation.cut else None
        write_copy(path, mutation.edit(anatomy), anatomy.data_bytes, cut)
        message = refusal(path)
        if message is None:
            accepted.append(mutation.name)
        elif mutation.expect not in message or "\n" in message:
            unclear.append(f"{mutation.name}: {message}")
    assert accepted == []
    assert unclear == []


def test_a_small_consistent_model_passes(tmp_path: Path) -> None:
    check_gguf_model(tiny_gguf(tmp_path / "tiny.gguf"))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ({"embedding_rows": 9}, "token_embd.weight has 9 rows for a vocabulary of 8"),
        ({"scores": 7}, "tokenizer.ggml.scores has 7 entries"),
        ({"token_types": [1] * 9}, "tokenizer.ggml.token_type has 9 entries"),
    ],
)
def test_a_vocabulary_that_disagrees_with_itself_or_the_embedding_is_refused(
    tmp_path: Path, shape: dict[str, object], expected: str
) -> None:
    path = tiny_gguf(tmp_path / "tiny.gguf", **shape)  # type: ignore[arg-type]
    with pytest.raises(ModelFileRejected, match=expected):
        check_gguf_model(path)


@pytest.fixture(scope="module")
def three_parts(smollm2_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return split_gguf(smollm2_bytes, 3, tmp_path_factory.mktemp("split"), "smol")


def written(parts: dict[str, bytes], folder: Path) -> list[Path]:
    for name, data in parts.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in parts]


def test_every_part_of_a_split_model_is_checked(
    three_parts: dict[str, bytes], tmp_path: Path
) -> None:
    first, second, third = written(three_parts, tmp_path)
    check_gguf_model(first)
    with pytest.raises(
        ModelFileRejected, match="is part 1 of 1 but says split.no=0, split.count=3"
    ):
        check_gguf_files([first], [first.name])  # a pull that took one part only
    with second.open("r+b") as part:
        part.truncate(second.stat().st_size - 1)
    with pytest.raises(ModelFileRejected, match=f"refused {second.name}: .*past the end"):
        check_gguf_model(first)
    third.unlink()
    with pytest.raises(ModelFileRejected, match=f"refused {third.name}: cannot be read"):
        check_gguf_files([first, third], [first.name, third.name])


def test_parts_given_out_of_order_are_refused(
    three_parts: dict[str, bytes], tmp_path: Path
) -> None:
    paths = written(three_parts, tmp_path)[::-1]
    with pytest.raises(ModelFileRejected, match="is part 1 of 3 but says split.no=2"):
        check_gguf_files(paths, [p.name for p in paths])


def test_a_passed_file_is_not_read_again_until_it_changes(
    smollm2_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []

    def counted(entry: Path) -> None:
        reads.append(entry)
        check_entry(entry)

    monkeypatch.setattr(file_checks, "check_entry", counted)
    model = tmp_path / "model.gguf"
    model.write_bytes(smollm2_file.read_bytes()[: 1 << 20])  # malformed: cut short
    checks = ModelChecks(tmp_path / "verdicts")
    for _ in range(2):
        with pytest.raises(ModelFileRejected):
            checks.require(model)
    assert len(reads) == 2  # a refusal is not remembered
    model.unlink()
    model.symlink_to(smollm2_file)
    checks.require(model)
    checks.require(model)
    assert len(reads) == 3
    os.utime(smollm2_file)  # touched: it may have changed, so it is read again
    checks.require(model)
    assert len(reads) == 4


def test_an_empty_or_missing_file_is_refused_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.touch()
    with pytest.raises(ModelFileRejected, match="too short for a GGUF header"):
        check_entry(empty)
    with pytest.raises(ModelFileRejected, match="refused missing.gguf: cannot be read"):
        ModelChecks(tmp_path / "verdicts").require(tmp_path / "missing.gguf")
