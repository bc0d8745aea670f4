"""Our fixes to the llama.cpp tree are applied exactly, or the build stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsdeploy.engines.llamacpp_patches import (
    PATCHES,
    SourcePatch,
    apply_patches,
    patches_digest,
)
from dsdeploy.errors import EngineBuildFailed

PATCH = SourcePatch("src/a.cpp", old="wait_for(1)", new="wait_until(deadline)", why="test")


def tree_with(tmp_path: Path, text: str) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.cpp").write_text(text)
    return tmp_path


def test_a_patch_replaces_its_passage(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, "x; wait_for(1); y;")
    apply_patches(tree, (PATCH,))
    assert (tree / "src" / "a.cpp").read_text() == "x; wait_until(deadline); y;"


@pytest.mark.parametrize("text", ["no such passage", "wait_for(1); wait_for(1);"])
def test_a_missing_or_repeated_passage_stops_the_build(tmp_path: Path, text: str) -> None:
    tree = tree_with(tmp_path, text)
    with pytest.raises(EngineBuildFailed, match=r"src/a.cpp.*llamacpp_patches"):
        apply_patches(tree, (PATCH,))
    assert (tree / "src" / "a.cpp").read_text() == text


def test_changing_a_patch_changes_the_digest() -> None:
    changed = SourcePatch(PATCH.path, PATCH.old, "wait_until(other)", PATCH.why)
    assert patches_digest((PATCH,)) != patches_digest((changed,))
    assert patches_digest() == patches_digest(PATCHES)
