"""The store keeps blobs by hash, refuses bad bytes and names, and never half-writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dsdeploy.errors import IntegrityError, StoreError, UnsafePathError
from dsdeploy.modelfile import ModelInfo
from dsdeploy.store import HashingWriter, Manifest, Store, StoredFile, safe_relative_path

INFO = ModelInfo(architecture="llama", context_length=2048, embedding_model=False)


def write_blob(store: Store, data: bytes, expected: str | None = None) -> StoredFile:
    partial = store.new_partial()
    writer = HashingWriter(partial)
    writer.write(data)
    actual = writer.close()
    store.commit_blob(partial, actual, expected)
    return StoredFile(path="model.gguf", sha256=actual, size=len(data))


@pytest.mark.parametrize(
    "name", ["../evil", "/etc/passwd", "a/../../b", "a\\..\\b", "", "a//b", "./a", "a\x00b"]
)
def test_names_that_escape_the_store_are_refused(name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_relative_path(name)


def test_nested_relative_names_are_accepted() -> None:
    assert str(safe_relative_path("pkg/sub/model.gguf")) == "pkg/sub/model.gguf"


def test_blob_is_named_by_its_sha256_and_read_only(tmp_path: Path) -> None:
    store = Store(tmp_path)
    stored = write_blob(store, b"weights")
    path = store.blob_path(stored.sha256)
    assert stored.sha256 == hashlib.sha256(b"weights").hexdigest()
    assert path.read_bytes() == b"weights"
    assert path.stat().st_mode & 0o222 == 0


def test_hash_mismatch_raises_and_leaves_no_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(IntegrityError, match="does not match"):
        write_blob(store, b"weights", expected="0" * 64)
    assert not store.blobs.exists() or not any(store.blobs.iterdir())
    assert list(store.partial.iterdir()) == []


def test_manifest_round_trips_and_points_at_its_weights(tmp_path: Path) -> None:
    store = Store(tmp_path)
    stored = write_blob(store, b"weights")
    manifest = Manifest(
        name="tiny",
        source="pypi:x==1:a.gguf",
        format="gguf",
        files=[stored],
        info=INFO,
        pulled_at="2026-01-01T00:00:00+00:00",
    )
    store.write_manifest(manifest)
    assert store.names() == ["tiny"]
    assert store.manifest("tiny") == manifest
    assert store.weights_path(manifest).read_bytes() == b"weights"


def test_manifest_naming_a_missing_blob_is_refused(tmp_path: Path) -> None:
    missing = StoredFile(path="m.gguf", sha256="a" * 64, size=3)
    manifest = Manifest(
        name="tiny", source="x:y", format="gguf", files=[missing], info=INFO, pulled_at="now"
    )
    with pytest.raises(StoreError, match="missing blob"):
        Store(tmp_path).write_manifest(manifest)


@pytest.mark.parametrize("name", ["../x", "UPPER", "a/b", ""])
def test_bad_model_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StoreError, match="invalid model name"):
        Store(tmp_path).manifest(name)


def test_unknown_manifest_is_none(tmp_path: Path) -> None:
    assert Store(tmp_path).manifest("nothing") is None
