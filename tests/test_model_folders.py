"""A model in the store is also a folder of links under its published names, the one engines
are given: built once and whole, the same on every call, and gone with ``models gc`` or
``models rm`` once no manifest describes it."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest

from dsdeploy import model_folder
from dsdeploy.errors import StoreError, UnsafePathError
from dsdeploy.modelfile import ModelInfo
from dsdeploy.store import HashingWriter, Manifest, Store, StoredFile
from tests.conftest import run_cli

INFO = ModelInfo(architecture="deepseek2", context_length=4096, embedding_model=False)
PARTS = ["Q2_K/DeepSeek-R1-Q2_K-00001-of-00002.gguf", "Q2_K/DeepSeek-R1-Q2_K-00002-of-00002.gguf"]


def home_store(home: Path) -> Store:
    return Store(home / "data" / "models")


def stored(store: Store, path: str, data: bytes) -> StoredFile:
    partial = store.new_partial()
    writer = HashingWriter(partial)
    writer.write(data)
    store.commit_blob(partial, writer.close(), None)
    return StoredFile(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def model(store: Store, name: str, files: dict[str, bytes], fmt: str = "gguf") -> Manifest:
    manifest = Manifest(
        name=name,
        source="hf:org/repo",
        format=fmt,
        files=[stored(store, path, data) for path, data in files.items()],
        info=INFO,
        pulled_at="2026-01-01T00:00:00+00:00",
    )
    store.write_manifest(manifest)
    return manifest


def split_model(store: Store, name: str = "r1", tag: bytes = b"") -> Manifest:
    """Part 2 listed first: the entry must still be part 1."""
    return model(store, name, {PARTS[1]: b"part two" + tag, PARTS[0]: b"part one" + tag})


def test_the_folder_has_the_manifests_names_as_relative_links_to_the_right_blobs(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "models")
    manifest = split_model(store)
    folder = store.materialize(manifest)
    assert folder.path.parent == store.dirs
    assert folder.entry == folder.path / PARTS[0]
    for file in manifest.files:
        link = folder.path / file.path
        assert link.is_symlink()
        assert not os.readlink(link).startswith("/")
        assert link.resolve() == store.blob_path(file.sha256).resolve()
        assert link.read_bytes() == store.blob_path(file.sha256).read_bytes()
    assert folder.entry.read_bytes() == b"part one"
    assert sorted(p.name for p in (folder.path / "Q2_K").iterdir()) == sorted(
        Path(p).name for p in PARTS
    )


def test_the_links_still_resolve_after_the_store_is_moved(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    folder = store.materialize(split_model(store)).path
    moved = tmp_path / "elsewhere"
    store.root.rename(moved)
    assert (moved / "dirs" / folder.name / PARTS[0]).read_bytes() == b"part one"


def test_a_safetensors_model_is_given_to_engines_as_its_folder(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    files = {"config.json": b"{}", "model-00001-of-00001.safetensors": b"weights"}
    folder = store.materialize(model(store, "tiny", files, fmt="safetensors"))
    assert folder.entry == folder.path
    assert (folder.path / "config.json").read_bytes() == b"{}"


def test_materializing_again_returns_the_same_folder_and_puts_back_a_removed_link(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "models")
    manifest = split_model(store)
    first = store.materialize(manifest)
    link_inode = os.lstat(first.entry).st_ino
    assert store.materialize(manifest) == first
    assert os.lstat(first.entry).st_ino == link_inode  # not rebuilt
    (first.path / PARTS[1]).unlink()
    assert store.materialize(manifest) == first
    assert (first.path / PARTS[1]).read_bytes() == b"part two"
    assert [p.name for p in store.dirs.iterdir()] == [first.path.name]


def test_two_callers_building_at_once_get_one_whole_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both callers find no folder and build their own copy; the second rename loses."""
    store = Store(tmp_path / "models")
    manifest = split_model(store)
    both_building = threading.Barrier(2, timeout=10)
    place_links = model_folder.place_links

    def in_step(folder: Path, links: Mapping[PurePosixPath, Path]) -> None:
        place_links(folder, links)
        if folder.name.startswith("."):
            both_building.wait()

    monkeypatch.setattr(model_folder, "place_links", in_step)
    with ThreadPoolExecutor(2) as pool:
        folders = set(pool.map(store.materialize, [manifest] * 2))
    assert len(folders) == 1
    folder = folders.pop()
    assert [p.name for p in store.dirs.iterdir()] == [folder.path.name]
    assert folder.entry.read_bytes() == b"part one"


def test_a_changed_manifest_gets_a_new_folder_and_gc_removes_the_stale_one(
    isolated_home: Path,
) -> None:
    store = home_store(isolated_home)
    old = store.materialize(split_model(store)).path
    new = store.materialize(split_model(store, tag=b" v2")).path
    assert new != old
    assert old.name.startswith("r1-") and new.name.startswith("r1-")
    half_built = store.dirs / f".{new.name}.abc123"
    half_built.mkdir()
    done = run_cli(isolated_home, "models", "gc")
    assert done.returncode == 0, done.stderr
    assert "removed 2 unused file(s)" in done.stderr  # the old parts' blobs
    assert [p.name for p in store.dirs.iterdir()] == [new.name]
    assert (new / PARTS[0]).read_bytes() == b"part one v2"


def test_models_rm_removes_the_models_folder_and_no_other(isolated_home: Path) -> None:
    store = home_store(isolated_home)
    removed = store.materialize(split_model(store, "r1")).path
    kept = store.materialize(split_model(store, "r1-0123456789ab", tag=b"!")).path
    done = run_cli(isolated_home, "models", "rm", "r1")
    assert done.returncode == 0, done.stderr
    assert not removed.exists()
    assert [p.name for p in store.dirs.iterdir()] == [kept.name]
    assert (kept / PARTS[0]).read_bytes() == b"part one!"


def test_a_missing_blob_names_the_file_and_the_pull_to_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    manifest = split_model(store)
    store.blob_path(manifest.files[0].sha256).unlink()
    with pytest.raises(StoreError) as raised:
        store.materialize(manifest)
    assert str(raised.value) == (
        f"model 'r1' is missing its file {PARTS[1]}; run `dsdeploy pull r1` again"
    )
    assert not store.dirs.exists()


def test_a_name_that_would_leave_the_folder_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    manifest = split_model(store)
    evil = StoredFile.model_construct(
        path="../../evil.gguf", **manifest.files[0].model_dump(exclude={"path"})
    )
    forged = manifest.model_copy(update={"files": [evil]})
    with pytest.raises(UnsafePathError):
        store.materialize(forged)
    assert not store.dirs.exists()
    assert not (tmp_path / "evil.gguf").exists()
