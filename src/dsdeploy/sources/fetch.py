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
import http.client
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from dsdeploy import __version__
from dsdeploy.errors import (
    AccessDenied,
    IntegrityError,
    RemoteNotFound,
    SourceError,
    StoreError,
)
from dsdeploy.fit import ensure_free_space
from dsdeploy.progress import ProgressHook
from dsdeploy.sources.http_body import Body, open_body
from dsdeploy.sources.sink import BlockSink
from dsdeploy.store import Store, StoredFile, safe_relative_path

ATTEMPTS = 4
"""Tries per file; each try after the first resumes where the last one stopped."""
RETRY_BACKOFF_S = 1.0
"""Wait before the second try; doubled before each later one."""

TIMEOUT = httpx.Timeout(30.0, read=120.0)
"""For the small requests (listings, HEAD, sidecars) that go through httpx."""

USER_AGENT = f"dsdeploy/{__version__}"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


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

    def update(self, chunk: bytes | memoryview) -> None:
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


class ServerBusy(http.client.HTTPException):
    """A 5xx answer to a file request: worth another try, like a dropped connection."""


def check_status(status: int, url: str, what: str) -> None:
    host = urlsplit(url).hostname
    if status in (401, 403):
        raise AccessDenied(f"{what}: access denied (HTTP {status}) by {host}")
    if status == 404:
        raise RemoteNotFound(f"{what}: not found (HTTP 404) at {url}")
    if status >= 400 and status != 416:
        raise SourceError(f"{what}: HTTP {status} from {host}")


def raise_for_status(response: httpx.Response, what: str) -> None:
    check_status(response.status_code, str(response.url), what)


def read_block(body: Body, buffer: memoryview) -> int:
    """Fill ``buffer`` from the body; fewer bytes only at the end of the body."""
    filled = 0
    while filled < len(buffer) and (got := body.readinto(buffer[filled:])):
        filled += got
    return filled


class Download:
    """One file's transfer into its partial file, across tries."""

    def __init__(self, remote: RemoteFile, partial: Path, headers: Mapping[str, str]) -> None:
        self.remote = remote
        self.partial = partial
        self.headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT, **headers}
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
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                    raise StoreError(
                        f"{self.remote.path}: disk full after {self.done} bytes "
                        f"({exc.strerror}); free space under {self.partial.parent.parent} "
                        "and run the same pull again to resume"
                    ) from None
                if attempt == ATTEMPTS:
                    raise SourceError(
                        f"{self.remote.path}: download failed ({exc}) after {self.done} "
                        "bytes; run the same pull again to resume"
                    ) from None
                time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))

    def one_try(self, progress: ProgressHook) -> None:
        headers = dict(self.headers)
        if self.done:
            headers["Range"] = f"bytes={self.done}-"
        body = open_body(self.remote.url, headers)
        try:
            if body.status >= 500:
                raise ServerBusy(f"HTTP {body.status}")
            check_status(body.status, body.url, self.remote.path)
            if body.status == 416 and self.done == self.remote.size:
                return
            if self.done and body.status != 206:
                self.restart()
            elif self.done and not body.header("Content-Range").startswith(f"bytes {self.done}-"):
                raise SourceError(f"{self.remote.path}: the server resumed at the wrong offset")
            length = int(body.header("Content-Length") or 0)
            total = self.remote.size or (self.done + length if length else 0)
            with self.partial.open("ab") as out:
                self.receive(body, out, total, progress)
        finally:
            body.close()

    def receive(self, body: Body, out: BinaryIO, total: int, progress: ProgressHook) -> None:
        """Bytes counted in ``done`` are always the ones handed to the sink, so after a
        failure the partial file and the digests agree once the sink has closed."""
        sink = BlockSink(out, self.digests.update)
        try:
            while True:
                buffer = sink.buffer()
                try:
                    got = read_block(body, buffer)
                except BaseException:
                    sink.give_back(buffer)
                    raise
                if got:
                    sink.hand_on(buffer, got)
                    self.done += got
                    progress(self.done, total)
                if got < len(buffer):
                    break
        finally:
            sink.close()
        os.fsync(out.fileno())


def already_stored(remote: RemoteFile, store: Store) -> StoredFile | None:
    if remote.sha256 is None or remote.size is None:
        return None
    if not store.has_blob(remote.sha256, remote.size):
        return None
    return StoredFile(path=remote.path, sha256=remote.sha256, size=remote.size)


def download(
    remote: RemoteFile,
    store: Store,
    progress: ProgressHook,
    headers: Mapping[str, str] | None = None,
) -> StoredFile:
    """Bring one remote file into the store's blobs, checked against the source's hash.
    ``headers`` (authorization) go to the file's host only, not to hosts it redirects to."""
    safe_relative_path(remote.path)
    with store.lock(remote.key):
        found = already_stored(remote, store)  # maybe a concurrent pull just finished it
        if found is not None:
            progress(found.size, found.size)
            return found
        transfer = Download(remote, store.resumable_partial(remote.key), headers or {})
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
