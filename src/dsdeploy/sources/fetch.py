"""HTTP downloads into the store: resumable, hashed while the bytes arrive, verified, atomic.

A download writes to ``partial/<hash>.part``, a name derived from the hash the source
vouches for, so an interrupted pull (network drop, Ctrl-C, kill -9) leaves a prefix that
the next pull finds. Resuming hashes that prefix once (a sequential read, several GB/s from
the page cache) and asks the server for the rest with ``Range``; no state besides the
partial file is kept, so there is nothing that can disagree with it. The finished file is
fsynced and renamed into ``blobs/`` only if its hash matches; otherwise it goes to
``quarantine/``. A file lock per download makes concurrent pulls take turns.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from dsdeploy.errors import (
    AccessDenied,
    IntegrityError,
    RemoteNotFound,
    SourceError,
    StoreError,
)
from dsdeploy.fit import ensure_free_space
from dsdeploy.progress import ProgressHook
from dsdeploy.sources.sink import BlockSink
from dsdeploy.store import Store, StoredFile, safe_relative_path

ATTEMPTS = 4
"""Tries per file; each try after the first resumes where the last one stopped."""

TIMEOUT = httpx.Timeout(30.0, read=120.0)


@dataclass(frozen=True)
class RemoteFile:
    """One file a source offers: where it is, its size, and the hash the source vouches for
    (its sha256, or for small files on Hugging Face only their git blob id)."""

    path: str
    url: str
    size: int | None
    sha256: str | None = None
    git_sha1: str | None = None

    @property
    def key(self) -> str:
        """Names the partial file and the lock: the same file resumes under the same name."""
        if self.sha256:
            return self.sha256
        if self.git_sha1:
            return f"git-{self.git_sha1}"
        raise SourceError(f"{self.path}: the source gives no hash for it, so it cannot be checked")


class Digests:
    """The sha256 the store names blobs by, plus git's blob hash when that is all we have."""

    def __init__(self, remote: RemoteFile) -> None:
        self.remote = remote
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.git: hashlib._Hash | None = None
        if self.remote.git_sha1 is not None and self.remote.size is not None:
            self.git = hashlib.sha1(f"blob {self.remote.size}\0".encode(), usedforsecurity=False)

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if self.git is not None:
            self.git.update(chunk)

    def absorb(self, path: Path) -> int:
        """Hash what an earlier try left in ``path``; return its size."""
        done = 0
        with path.open("rb") as existing:
            while chunk := existing.read(1 << 20):
                self.update(chunk)
                done += len(chunk)
        return done

    def mismatch(self) -> tuple[str, str] | None:
        """(expected, actual) when the bytes are not what the source vouched for."""
        if self.remote.sha256 is not None:
            actual = self.sha256.hexdigest()
            return None if actual == self.remote.sha256 else (self.remote.sha256, actual)
        if self.git is None or self.remote.git_sha1 is None:
            raise SourceError(f"{self.remote.path}: no hash to check it against")
        actual = self.git.hexdigest()
        return None if actual == self.remote.git_sha1 else (self.remote.git_sha1, actual)


def raise_for_status(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status in (401, 403):
        raise AccessDenied(f"{what}: access denied (HTTP {status}) by {response.url.host}")
    if status == 404:
        raise RemoteNotFound(f"{what}: not found (HTTP 404) at {response.url}")
    if status >= 400 and status != 416:
        raise SourceError(f"{what}: HTTP {status} from {response.url.host}")


class Download:
    """One file's transfer into its partial file, across tries."""

    def __init__(self, client: httpx.Client, remote: RemoteFile, partial: Path) -> None:
        self.client = client
        self.remote = remote
        self.partial = partial
        self.digests = Digests(remote)
        self.done = self.digests.absorb(partial) if partial.exists() else 0
        if remote.size is not None and self.done > remote.size:
            self.restart()

    def restart(self) -> None:
        self.partial.write_bytes(b"")
        self.digests.reset()
        self.done = 0

    def run(self, progress: ProgressHook) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.one_try(progress)
                return
            except httpx.TransportError as exc:
                if attempt == ATTEMPTS:
                    raise SourceError(
                        f"{self.remote.path}: download failed ({exc.__class__.__name__}) after "
                        f"{self.done} bytes; run the same pull again to resume"
                    ) from None

    def one_try(self, progress: ProgressHook) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self.done:
            headers["Range"] = f"bytes={self.done}-"
        with self.client.stream("GET", self.remote.url, headers=headers) as response:
            raise_for_status(response, self.remote.path)
            if response.status_code == 416 and self.done == self.remote.size:
                return
            if self.done and response.status_code != 206:
                self.restart()
            elif self.done and not response.headers.get("Content-Range", "").startswith(
                f"bytes {self.done}-"
            ):
                raise SourceError(f"{self.remote.path}: the server resumed at the wrong offset")
            length = int(response.headers.get("Content-Length", 0))
            total = self.remote.size or (self.done + length if length else 0)
            with self.partial.open("ab") as out:
                self.receive(response, out, total, progress)

    def receive(
        self, response: httpx.Response, out: BinaryIO, total: int, progress: ProgressHook
    ) -> None:
        try:
            sink = BlockSink(out, self.digests.update)
            try:
                for chunk in response.iter_raw():
                    self.done += len(chunk)
                    if sink.add(chunk):
                        progress(self.done, total)
            finally:
                sink.close()
            os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreError(
                    f"{self.remote.path}: disk full after {self.done} bytes "
                    f"({exc.strerror}); free space under {self.partial.parent.parent} and "
                    "run the same pull again to resume"
                ) from None
            raise
        progress(self.done, total)


def already_stored(remote: RemoteFile, store: Store) -> StoredFile | None:
    if remote.sha256 is None or remote.size is None:
        return None
    if not store.has_blob(remote.sha256, remote.size):
        return None
    return StoredFile(path=remote.path, sha256=remote.sha256, size=remote.size)


def download(
    client: httpx.Client, remote: RemoteFile, store: Store, progress: ProgressHook
) -> StoredFile:
    """Bring one remote file into the store's blobs, checked against the source's hash."""
    safe_relative_path(remote.path)
    with store.lock(remote.key):
        found = already_stored(remote, store)  # maybe a concurrent pull just finished it
        if found is not None:
            progress(found.size, found.size)
            return found
        transfer = Download(client, remote, store.resumable_partial(remote.key))
        if remote.size is not None:
            ensure_free_space(store.partial, remote.size - transfer.done)
        transfer.run(progress)
        return finalize(transfer, store)


def finalize(transfer: Download, store: Store) -> StoredFile:
    """Into the blobs if the bytes are what the source vouched for; else into quarantine."""
    remote = transfer.remote
    mismatch = transfer.digests.mismatch()
    if mismatch is None and remote.size is not None and transfer.done != remote.size:
        mismatch = (f"{remote.size} bytes", f"{transfer.done} bytes")
    if mismatch is not None:
        moved = store.quarantine_file(transfer.partial, remote.path)
        raise IntegrityError(remote.path, *mismatch, moved)
    actual = transfer.digests.sha256.hexdigest()
    store.commit_blob(transfer.partial, actual, None)
    return StoredFile(path=remote.path, sha256=actual, size=transfer.done)
