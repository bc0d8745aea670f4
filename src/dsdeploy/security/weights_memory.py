"""Decrypted weights that never touch a disk: a sealed memfd handed to the engine.

``memfd_create`` gives anonymous memory with a file descriptor; the engine inherits the
descriptor and opens the weights as ``/proc/self/fd/N`` (llama.cpp mmaps it like a file, so
the pages are shared, not copied). Once written, the memfd is sealed: neither this process
nor the engine can change, grow or shrink it. It lives as long as one loaded engine (its
restarts reuse it) and is released when the engine is stopped for good.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
from pathlib import Path

from dsdeploy.errors import WeightsTampered
from dsdeploy.security.weights_crypto import Kek, decrypt_stream

SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
PR_SET_DUMPABLE = 4


def forbid_dumps() -> None:
    """Make this process non-dumpable: no core file, and other processes of the same user
    cannot ptrace it or read its memory, which holds the weights key. Reset by exec, so an
    engine child keeps its own setting."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def decrypt_to_memfd(blob: Path, kek: Kek, what: str, plain_sha256: str) -> int:
    """A sealed memfd holding the plaintext of ``blob``, checked against ``plain_sha256``
    (the manifest's record) as well as by every chunk's tag. Close-on-exec: only an engine
    started with it in ``pass_fds`` inherits it."""
    fd = os.memfd_create(f"dsdeploy-{what}"[:200], os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        digest = hashlib.sha256()
        with blob.open("rb") as source, open(fd, "wb", closefd=False) as out:
            for chunk in decrypt_stream(source, kek, what):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != plain_sha256:
            raise WeightsTampered(
                f"{what} decrypts to sha256 {digest.hexdigest()}, but its manifest records "
                f"{plain_sha256}: the manifest or the file was replaced"
            )
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


class SealedWeights:
    """One engine's decrypted weights (see ``engines.base.MemoryWeights``)."""

    def __init__(self, blob: Path, kek: Kek, what: str, plain_sha256: str) -> None:
        self.blob = blob
        self.kek = kek
        self.what = what
        self.plain_sha256 = plain_sha256
        self._fd: int | None = None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("the weights have not been loaded")
        return self._fd

    def load(self) -> None:
        if self._fd is None:
            self._fd = decrypt_to_memfd(self.blob, self.kek, self.what, self.plain_sha256)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
