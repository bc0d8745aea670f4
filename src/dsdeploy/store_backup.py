"""Copies of the model store elsewhere (a disk, a mount of object storage) and back, each
file checked against its sha256 on the way out and on the way in.

An export folder holds ``dsdeploy-export.json`` (the models' manifests, and every file's
hash and size) and ``blobs/sha256-…``, named by hash as in the store. Exporting again to
the same folder copies only what is missing (files already there are hashed again), so a
store can be kept in several places. An import first checks every file it needs, then
stores them, then names the models: a corrupted or truncated export adds nothing, and the
error names the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from dsdeploy.errors import StoreError
from dsdeploy.store import SHA256_HEX, HashingWriter, Manifest, Store, file_sha256, utc_now

EXPORT_MANIFEST = "dsdeploy-export.json"
CHUNK = 1 << 20


class ExportedBlob(BaseModel):
    sha256: str = Field(pattern=SHA256_HEX)
    size: int = Field(ge=0)


class ExportManifest(BaseModel):
    schema_version: int = 1
    exported_at: str
    models: list[Manifest]
    blobs: list[ExportedBlob]


def blob_name(sha256: str) -> str:
    return f"blobs/sha256-{sha256}"


def copy_hashing(source: Path, target: Path) -> tuple[str, int]:
    writer = HashingWriter(target)
    try:
        with source.open("rb") as reader:
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
    finally:
        digest = writer.close()
    return digest, writer.size


def unique_blobs(manifests: list[Manifest]) -> list[ExportedBlob]:
    found = {f.sha256: f.size for m in manifests for f in m.files}
    return [ExportedBlob(sha256=sha256, size=size) for sha256, size in found.items()]


def export_blob(store: Store, blob: ExportedBlob, out: Path) -> bool:
    """Copy one blob unless a good copy is there; False when it was already there."""
    target = out / blob_name(blob.sha256)
    same_size = target.is_file() and target.stat().st_size == blob.size
    if same_size and file_sha256(target) == blob.sha256:
        return False
    partial = target.with_name(target.name + ".partial")
    digest, size = copy_hashing(store.blob_path(blob.sha256), partial)
    if (digest, size) != (blob.sha256, blob.size):
        partial.unlink()
        raise StoreError(
            f"the store's file sha256-{blob.sha256} is corrupt (hash {digest}); run "
            "`dsdeploy models verify` and pull the model again before exporting it"
        )
    partial.replace(target)
    return True


def export_models(store: Store, names: list[str], out: Path) -> Iterator[tuple[str, bool]]:
    """Export the named models (all when empty); yields each blob and whether it was copied."""
    try:
        yield from export_into(store, names, out)
    except OSError as exc:
        raise StoreError(f"cannot export to {out}: {exc.strerror}") from None


def export_into(store: Store, names: list[str], out: Path) -> Iterator[tuple[str, bool]]:
    manifests = [store.get(name) for name in names or store.names()]
    if not manifests:
        raise StoreError("the store has no model to export; pull one first")
    for manifest in manifests:
        for stored in manifest.files:
            store.stored_blob(manifest, stored)  # every file present, before any copy
    (out / "blobs").mkdir(parents=True, exist_ok=True)
    blobs = unique_blobs(manifests)
    for blob in blobs:
        yield blob_name(blob.sha256), export_blob(store, blob, out)
    record = ExportManifest(exported_at=utc_now(), models=manifests, blobs=blobs)
    partial = out / (EXPORT_MANIFEST + ".partial")
    partial.write_text(record.model_dump_json(indent=1))
    partial.replace(out / EXPORT_MANIFEST)


def read_export(folder: Path) -> ExportManifest:
    path = folder / EXPORT_MANIFEST
    if not path.is_file():
        raise StoreError(f"{folder} is not a dsdeploy export: it has no {EXPORT_MANIFEST}")
    try:
        return ExportManifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise StoreError(f"{path} is damaged: {exc.errors()[0]['msg']}") from None


def check_blob(folder: Path, blob: ExportedBlob) -> None:
    path = folder / blob_name(blob.sha256)
    if not path.is_file():
        raise StoreError(f"{path} is missing from the export; export the model again")
    size = path.stat().st_size
    if size != blob.size:
        raise StoreError(f"{path} is {size} bytes, the export says {blob.size}: it is corrupt")
    digest = file_sha256(path)
    if digest != blob.sha256:
        raise StoreError(f"{path} hashes to {digest}, not the {blob.sha256} it is named for")


def import_models(store: Store, folder: Path) -> list[str]:
    """Check every file of the export, then store them, then name the models."""
    try:
        return import_from(store, folder)
    except OSError as exc:
        raise StoreError(f"cannot import from {folder}: {exc.strerror}") from None


def import_from(store: Store, folder: Path) -> list[str]:
    record = read_export(folder)
    for manifest in record.models:
        present = store.manifest(manifest.name)
        if present is not None and present.files != manifest.files:
            raise StoreError(
                f"the store already has a different {manifest.name!r}; run `dsdeploy models "
                f"rm {manifest.name}` first to replace it"
            )
    needed = [b for b in unique_blobs(record.models) if not store.has_blob(b.sha256, b.size)]
    for blob in needed:
        check_blob(folder, blob)
    with store.pulling():
        for blob in needed:
            source = folder / blob_name(blob.sha256)
            partial = store.new_partial()
            digest, _ = copy_hashing(source, partial)  # hashed again: the copy is what counts
            store.commit_blob(partial, digest, blob.sha256, str(source))
        for manifest in record.models:
            store.write_manifest(manifest)
    return [manifest.name for manifest in record.models]
