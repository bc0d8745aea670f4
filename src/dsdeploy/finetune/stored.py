"""A finished adapter (or merged model) put into the model store like a pulled model: its
files become blobs by sha256 and a manifest names them; an adapter's manifest names its
base, which is how ``serve`` knows which engine loads it."""

from __future__ import annotations

from pathlib import Path

from dsdeploy.modelfile import ModelInfo
from dsdeploy.store import HashingWriter, Manifest, Store, StoredFile, utc_now

CHUNK = 1 << 20


def store_file(store: Store, path: Path, name: str) -> StoredFile:
    partial = store.new_partial()
    writer = HashingWriter(partial)
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            writer.write(chunk)
    digest = writer.close()
    store.commit_blob(partial, digest, None, name)
    return StoredFile(path=name, sha256=digest, size=writer.size)


def store_model(
    store: Store,
    name: str,
    files: list[tuple[Path, str]],
    info: ModelInfo,
    source: str,
    base: str | None = None,
) -> Manifest:
    """``files``: (where it is now, its name in the model), the weights file first."""
    with store.pulling():  # gc must not take the blobs before the manifest names them
        manifest = Manifest(
            name=name,
            source=source,
            format="gguf",
            files=[store_file(store, path, inside) for path, inside in files],
            info=info,
            pulled_at=utc_now(),
            base=base,
        )
        store.write_manifest(manifest)
    return manifest
