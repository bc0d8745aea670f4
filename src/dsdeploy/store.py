"""The model store: blobs named by their sha256, and one JSON manifest per model name.

Layout under ``Dirs.models``::

    blobs/sha256-<hex>        immutable file contents, shared between models (of a weights
                              file encrypted at rest, its ciphertext: ``StoredFile.encrypted``)
    manifests/<name>.json     what a name means: source, format, files and their hashes
    dirs/<name>-<hash>/<path> the model as published: one relative link per manifest file
                              (sub-folders kept) to its blob, as Hugging Face's cache has
                              snapshots/ over blobs/; <hash> is the first 12 hex digits of
                              the sha256 of the file list, so a changed manifest gets a new
                              folder; engines are given these paths (``materialize``)
    partial/                  downloads in progress (same filesystem, so finalize is a rename)
    quarantine/               downloads whose bytes did not match their source's hash
    locks/                    one lock file per download, so concurrent pulls take turns

Every name that comes from outside (a model name, a file path inside a repo or wheel) is
checked here, so nothing can be written outside the store.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Protocol

from filelock import FileLock
from pydantic import BaseModel, Field, field_validator

from dsdeploy.errors import IntegrityError, StoreError, UnsafePathError
from dsdeploy.gguf_parts import is_first_part
from dsdeploy.model_folder import publish, remove_folder
from dsdeploy.modelfile import ModelInfo

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SHA256_HEX = r"^[0-9a-f]{64}$"
WEIGHT_SUFFIXES = (".gguf", ".safetensors")


class Encryption(BaseModel):
    """A file stored encrypted (see ``security.weights_crypto``): the blob holds ciphertext,
    and these are the plaintext's facts, checked again after every decryption."""

    plain_sha256: str = Field(pattern=SHA256_HEX)
    plain_size: int = Field(ge=0)
    key_id: str = Field(description="Id of the key the file's data key is wrapped with.")


class StoredFile(BaseModel):
    path: str = Field(description="Path of the file inside its model, as the source names it.")
    sha256: str = Field(pattern=SHA256_HEX, description="The blob's hash, as stored.")
    size: int = Field(ge=0)
    encrypted: Encryption | None = None

    @field_validator("path")
    @classmethod
    def stays_inside(cls, path: str) -> str:
        """A manifest edited by hand (or by an attacker) cannot name a path outside the model."""
        safe_relative_path(path)
        return path


class Manifest(BaseModel):
    schema_version: int = 1
    name: str
    source: str = Field(description="Where the files came from, as a source spec.")
    format: str = Field(description="'gguf' or 'safetensors'.")
    files: list[StoredFile] = Field(min_length=1)
    info: ModelInfo
    pulled_at: str
    base: str | None = Field(
        None,
        description="For a LoRA adapter (format 'gguf', made by `dsdeploy finetune`): the "
        "stored model it applies to; the engine of that model serves it.",
    )

    @property
    def weights(self) -> StoredFile:
        return weights_file(self.files, self.format)

    @property
    def weights_bytes(self) -> int:
        """All the weights: every part of a split GGUF, every safetensors shard."""
        return weights_bytes(self.files)


class Sized(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int | None: ...


def weights_file(files: list[StoredFile], model_format: str) -> StoredFile:
    """The file an engine loads: the first one of the model's format (of a split GGUF, part
    1, which holds the metadata; llama.cpp finds the other parts from its name)."""
    return next(
        (f for f in files if f.path.endswith(f".{model_format}") and is_first_part(f.path)),
        files[0],
    )


def weights_bytes(files: Iterable[Sized]) -> int:
    return sum(f.size or 0 for f in files if f.path.endswith(WEIGHT_SUFFIXES))


def check_model_name(name: str) -> str:
    if not MODEL_NAME.match(name):
        raise StoreError(
            f"invalid model name {name!r}: use lowercase letters, digits, '.', '_' or '-'"
        )
    return name


def safe_relative_path(name: str) -> PurePosixPath:
    """A path from outside, accepted only if it stays inside the folder it is joined to."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or any(part in ("..", "") for part in path.parts)
        or name != str(path)
    ):
        raise UnsafePathError(name)
    return path


def folder_name(manifest: Manifest) -> str:
    """``<name>-<hash of the file list>``: a manifest with other files gets another folder."""
    listing = "\n".join(sorted(f"{f.sha256} {f.size} {f.path}" for f in manifest.files))
    return f"{manifest.name}-{hashlib.sha256(listing.encode()).hexdigest()[:12]}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class HashingWriter:
    """Writes a file and hashes it in the same pass, so verification needs no second read."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._file = target.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def close(self) -> str:
        """Flush to disk (so a crash cannot leave a torn blob) and return the sha256."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable: the new name is in the directory's own data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelDir:
    """A model as a folder of its files under their published names."""

    path: Path
    entry: Path
    """What an engine is given: the GGUF file (part 1 of a split one), or for a safetensors
    checkpoint the folder itself, as transformers and vLLM take it."""


@dataclass(frozen=True)
class BlobCheck:
    sha256: str
    problem: str | None
    """None when the blob's bytes hash to its name; otherwise what is wrong."""


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.partial = root / "partial"
        self.quarantine = root / "quarantine"
        self.locks = root / "locks"
        self.dirs = root / "dirs"

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / f"sha256-{sha256}"

    def has_blob(self, sha256: str, size: int) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and path.stat().st_size == size

    def new_partial(self, suffix: str = "") -> Path:
        self.partial.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.partial, suffix=suffix)
        os.close(fd)
        return Path(name)

    def resumable_partial(self, key: str) -> Path:
        """A partial file with a stable name, so a later pull finds it and resumes."""
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial / f"{key}.part"

    def lock(self, key: str) -> FileLock:
        """Held while one download of ``key`` runs; a second pull waits, then finds the blob."""
        self.locks.mkdir(parents=True, exist_ok=True)
        return FileLock(self.locks / f"{key}.lock")

    @contextmanager
    def pulling(self) -> Iterator[None]:
        """Held for a whole pull, shared with other pulls: the blobs a pull stores are named
        by no manifest until it ends, so ``gc``, which takes this lock exclusively, must not
        run meanwhile."""
        with self.store_lock(fcntl.LOCK_SH):
            yield

    @contextmanager
    def store_lock(self, mode: int) -> Iterator[None]:
        self.locks.mkdir(parents=True, exist_ok=True)
        with (self.locks / "store.lock").open("a") as handle:
            fcntl.flock(handle, mode)  # released when the file closes, or the process dies
            yield

    def quarantine_file(self, partial: Path, what: str) -> Path:
        """Keep bad bytes out of the store but on disk, for whoever wants to inspect them."""
        self.quarantine.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        target = self.quarantine / f"{stamp}-{PurePosixPath(what).name}"
        os.replace(partial, target)
        return target

    def commit_blob(
        self, partial: Path, actual_sha256: str, expected_sha256: str | None, what: str = ""
    ) -> Path:
        """Move a fully written, fsynced partial file into the blobs, if its hash is right;
        otherwise into the quarantine."""
        if expected_sha256 is not None and actual_sha256 != expected_sha256:
            moved = self.quarantine_file(partial, what or partial.name)
            raise IntegrityError(what or partial.name, expected_sha256, actual_sha256, moved)
        self.blobs.mkdir(parents=True, exist_ok=True)
        target = self.blob_path(actual_sha256)
        os.replace(partial, target)
        os.chmod(target, 0o444)
        fsync_dir(self.blobs)
        return target

    def write_manifest(self, manifest: Manifest) -> None:
        check_model_name(manifest.name)
        for stored in manifest.files:
            safe_relative_path(stored.path)
            if not self.has_blob(stored.sha256, stored.size):
                raise StoreError(f"manifest {manifest.name!r} names a missing blob {stored.path}")
        self.manifests.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.manifests, prefix=f".{manifest.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            out.write(manifest.model_dump_json(indent=2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.manifests / f"{manifest.name}.json")
        fsync_dir(self.manifests)

    def manifest(self, name: str) -> Manifest | None:
        path = self.manifests / f"{check_model_name(name)}.json"
        if not path.is_file():
            return None
        return Manifest.model_validate_json(path.read_bytes())

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.manifests.glob("*.json"))

    def manifests_all(self) -> Iterator[Manifest]:
        for name in self.names():
            found = self.manifest(name)
            if found is not None:
                yield found

    def weights_path(self, manifest: Manifest) -> Path:
        return self.present_blob(manifest, manifest.weights)

    def present_blob(self, manifest: Manifest, stored: StoredFile) -> Path:
        """A file's blob, for readers that need its plain bytes."""
        if stored.encrypted is not None:
            raise StoreError(
                f"model {manifest.name!r} has its file {stored.path} encrypted; `dsdeploy "
                f"serve` decrypts it into memory, or run `dsdeploy decrypt {manifest.name}`"
            )
        return self.stored_blob(manifest, stored)

    def stored_blob(self, manifest: Manifest, stored: StoredFile) -> Path:
        """A file's blob as stored, encrypted or not."""
        if not self.has_blob(stored.sha256, stored.size):
            raise StoreError(
                f"model {manifest.name!r} is missing its file {stored.path}; run `dsdeploy "
                f"pull {manifest.name}` again"
            )
        return self.blob_path(stored.sha256)

    def materialize(self, manifest: Manifest) -> ModelDir:
        """The model's folder of links, made if missing; calling again returns the same folder.
        Held under the shared store lock, so ``gc`` cannot take a folder being built."""
        links = {safe_relative_path(f.path): self.present_blob(manifest, f) for f in manifest.files}
        folder = self.dirs / folder_name(manifest)
        with self.store_lock(fcntl.LOCK_SH):
            publish(folder, links)
        entry = folder / manifest.weights.path if manifest.format == "gguf" else folder
        return ModelDir(folder, entry)

    def get(self, name: str) -> Manifest:
        """A model's manifest, or an error that lists the models there are."""
        found = self.manifest(name)
        if found is None:
            known = ", ".join(self.names()) or "none"
            raise StoreError(f"no model {name!r} in the store; models: {known}")
        return found

    def remove(self, name: str) -> Manifest:
        """Forget a name and drop its folders; its blobs stay until ``gc``, since other names
        may share them."""
        found = self.get(name)
        (self.manifests / f"{name}.json").unlink()
        self.remove_folders(name)
        return found

    def remove_folders(self, name: str) -> None:
        """Drop a model's folders of links; ``materialize`` makes them again when needed."""
        own = re.compile(re.escape(name) + r"-[0-9a-f]{12}")
        for folder in self.dirs.glob(f"{name}-*"):
            if own.fullmatch(folder.name):
                remove_folder(folder)

    def referenced_blobs(self) -> set[str]:
        return {stored.sha256 for m in self.manifests_all() for stored in m.files}

    def gc(self) -> dict[Path, int]:
        """Delete blobs no manifest names, quarantined files and model folders no manifest
        describes (or left half-built); return the files that went. Partial downloads stay:
        the next pull resumes them. Refused while a pull runs."""
        try:
            with self.store_lock(fcntl.LOCK_EX | fcntl.LOCK_NB):
                return self.collect_garbage()
        except BlockingIOError:
            raise StoreError(
                "a pull is running, and the files it has stored are not in a manifest yet; "
                "run `dsdeploy models gc` again when it has finished"
            ) from None

    def collect_garbage(self) -> dict[Path, int]:
        current = {folder_name(m) for m in self.manifests_all()}
        for folder in sorted(self.dirs.glob("*")):  # links only: not counted as files freed
            if folder.name not in current:
                remove_folder(folder)
        keep = self.referenced_blobs()
        removed = [
            blob
            for blob in sorted(self.blobs.glob("sha256-*"))
            if blob.name.removeprefix("sha256-") not in keep
        ]
        removed += sorted(self.quarantine.glob("*"))
        sizes = {path: path.stat().st_size for path in removed}
        for path in removed:
            path.unlink()
        return sizes

    def verify(self, names: list[str]) -> Iterator[tuple[str, StoredFile, BlobCheck]]:
        """Re-hash every blob the named models use (each blob once), against its name."""
        seen: dict[str, BlobCheck] = {}
        for name in names:
            for stored in self.get(name).files:
                if stored.sha256 not in seen:
                    seen[stored.sha256] = self.check_blob(stored)
                yield name, stored, seen[stored.sha256]

    def check_blob(self, stored: StoredFile) -> BlobCheck:
        path = self.blob_path(stored.sha256)
        if not path.is_file():
            return BlobCheck(stored.sha256, "missing")
        if path.stat().st_size != stored.size:
            return BlobCheck(stored.sha256, f"size {path.stat().st_size}, expected {stored.size}")
        actual = file_sha256(path)
        problem = None if actual == stored.sha256 else f"content hashes to {actual}"
        return BlobCheck(stored.sha256, problem)
