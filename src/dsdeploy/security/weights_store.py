"""Encrypt (and decrypt) a stored model's weights in place, leaving no other copy.

Each weights blob is encrypted into a new blob (written, fsynced, renamed into place), the
manifests that name it are rewritten to the encrypted blob with the plaintext's sha256 and
size, and only then is the plaintext blob deleted. A crash at any step leaves either the
old manifest with its blob, or the new one with a stray blob that the next run (or
``dsdeploy models gc``) removes. Blobs are shared between models by content, so models that
share a weights file are converted together, or not at all.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.errors import StoreError
from dsdeploy.security.weights_crypto import DEFAULT_CHUNK, Kek, decrypt_stream, encrypt_stream
from dsdeploy.store import (
    WEIGHT_SUFFIXES,
    Encryption,
    HashingWriter,
    Manifest,
    Store,
    StoredFile,
)


@dataclass(frozen=True)
class Converted:
    model: str
    path: str
    before: str
    after: str


class HashingReader:
    """Hashes what the encryption reads, so the plaintext is checked in the same pass."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.hash = hashlib.sha256()

    def read(self, size: int, /) -> bytes:
        data = self._file.read(size)
        self.hash.update(data)
        return data

    def close(self) -> None:
        self._file.close()


@contextmanager
def store_exclusively(store: Store) -> Iterator[None]:
    with ExitStack() as stack:
        try:
            stack.enter_context(store.store_lock(fcntl.LOCK_EX | fcntl.LOCK_NB))
        except BlockingIOError:
            raise StoreError(
                "a pull is running in this store; run the command again when it has finished"
            ) from None
        yield


def encrypt_blob(store: Store, stored: StoredFile, kek: Kek, chunk_size: int) -> StoredFile:
    partial = store.new_partial(".enc")
    reader = HashingReader(store.blob_path(stored.sha256))
    writer = HashingWriter(partial)
    try:
        header = encrypt_stream(reader, writer, kek, stored.size, chunk_size)
    finally:
        reader.close()
        sealed_sha256 = writer.close()
    if reader.hash.hexdigest() != stored.sha256:
        partial.unlink()
        raise StoreError(
            f"{stored.path}: its blob no longer hashes to {stored.sha256}; run `dsdeploy "
            "models verify` and pull the model again before encrypting it"
        )
    store.commit_blob(partial, sealed_sha256, None)
    encryption = Encryption(plain_sha256=stored.sha256, plain_size=stored.size, key_id=kek.id)
    return StoredFile(
        path=stored.path, sha256=sealed_sha256, size=header.sealed_size, encrypted=encryption
    )


def decrypt_blob(store: Store, stored: StoredFile, kek: Kek) -> StoredFile:
    assert stored.encrypted is not None
    partial = store.new_partial()
    writer = HashingWriter(partial)
    try:
        with store.blob_path(stored.sha256).open("rb") as source:
            for chunk in decrypt_stream(source, kek, stored.path):
                writer.write(chunk)
    except BaseException:
        writer.close()
        partial.unlink()
        raise
    plain = stored.encrypted.plain_sha256
    store.commit_blob(partial, writer.close(), plain, stored.path)
    return StoredFile(path=stored.path, sha256=plain, size=stored.encrypted.plain_size)


def convert(
    store: Store,
    names: list[str],
    verb: str,
    wanted: Callable[[StoredFile], bool],
    change: Callable[[StoredFile], StoredFile],
) -> list[Converted]:
    """Replace every wanted file of the named models by ``change(file)``, rewrite their
    manifests, then delete the blobs no manifest names any more."""
    with store_exclusively(store):
        manifests = {name: store.get(name) for name in dict.fromkeys(names)}
        blobs = {f.sha256: f for m in manifests.values() for f in m.files if wanted(f)}
        shared_with(store, manifests, blobs, verb)
        for manifest in manifests.values():
            for stored in filter(wanted, manifest.files):
                store.stored_blob(manifest, stored)  # present, of the right size
        done = {sha: change(stored) for sha, stored in blobs.items()}
        converted, written = [], []
        for manifest in manifests.values():
            files = [done.get(f.sha256, f) for f in manifest.files]
            written += files
            converted += [
                Converted(manifest.name, old.path, old.sha256, new.sha256)
                for old, new in zip(manifest.files, files, strict=True)
                if old is not new
            ]
            store.write_manifest(manifest.model_copy(update={"files": files}))
            store.remove_folders(manifest.name)
        # Plaintext left by a run that stopped after its manifests were written goes too.
        left = {f.encrypted.plain_sha256 for f in written if f.encrypted is not None}
        drop_unnamed(store, set(blobs) | left)
    return converted


def shared_with(
    store: Store, manifests: dict[str, Manifest], blobs: dict[str, StoredFile], verb: str
) -> None:
    """Refuse to convert a blob that a model left out of ``manifests`` also names."""
    for other in store.manifests_all():
        if other.name in manifests:
            continue
        common = sorted(f.path for f in other.files if f.sha256 in blobs)
        if common:
            together = " ".join([*manifests, other.name])
            raise StoreError(
                f"model {other.name!r} shares {common[0]} with {', '.join(manifests)}; "
                f"{verb} them together: `dsdeploy {verb} {together}`"
            )


def drop_unnamed(store: Store, candidates: set[str]) -> None:
    named = store.referenced_blobs()
    for sha256 in sorted(candidates - named):
        store.blob_path(sha256).unlink(missing_ok=True)


def encrypt_models(
    store: Store, names: list[str], kek: Kek, chunk_size: int = DEFAULT_CHUNK
) -> list[Converted]:
    """Encrypt the models' weight files; files already encrypted are left as they are."""
    return convert(
        store,
        names,
        "encrypt",
        lambda f: f.encrypted is None and f.path.endswith(WEIGHT_SUFFIXES),
        lambda f: encrypt_blob(store, f, kek, chunk_size),
    )


def decrypt_models(store: Store, names: list[str], kek: Kek) -> list[Converted]:
    """Put the models' encrypted files back in the clear (to hand them on, or re-key)."""
    return convert(
        store,
        names,
        "decrypt",
        lambda f: f.encrypted is not None,
        lambda f: decrypt_blob(store, f, kek),
    )
