"""Received bytes are written and hashed on two threads of their own.

Receiving, writing to the page cache and sha256 each cost about the same CPU per byte here
(≈1 GB/s each on one core); done one after another in the receiving thread, a download ran
at half of curl's speed. Both ``file.write`` and ``hashlib``'s ``update`` release the GIL on
large buffers, so with the three overlapped the download runs at the pace of the slowest
of them. Chunks are handed on in lists of megabytes, not joined (a copy), per thread hop.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

BLOCK = 8 << 20
MAX_PENDING_BLOCKS = 4
"""Bounds memory (blocks in flight × BLOCK) when the disk or the hash is slower than the net."""

FSYNC_EVERY = 256 << 20
"""Bytes between fsyncs of the partial file, so a power cut loses at most this much."""


class BlockSink:
    def __init__(self, out: BinaryIO, update_hash: Callable[[bytes], None]) -> None:
        self.out = out
        self.update_hash = update_hash
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="dsdeploy-write")
        self.hasher = ThreadPoolExecutor(1, thread_name_prefix="dsdeploy-hash")
        self.pending: deque[Future[None]] = deque()
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.unsynced = 0

    def add(self, chunk: bytes) -> bool:
        """Take a chunk; True when a block was handed on (a good moment to show progress)."""
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        if self.buffered < BLOCK:
            return False
        self.hand_on()
        return True

    def hand_on(self) -> None:
        block, size = self.chunks, self.buffered
        self.chunks = []
        self.buffered = 0
        self.pending.append(self.writer.submit(self.write, block, size))
        self.pending.append(self.hasher.submit(self.hash, block))
        while len(self.pending) > 2 * MAX_PENDING_BLOCKS:
            self.pending.popleft().result()

    def hash(self, block: list[bytes]) -> None:
        for chunk in block:
            self.update_hash(chunk)

    def write(self, block: list[bytes], size: int) -> None:
        self.out.writelines(block)
        self.unsynced += size
        if self.unsynced >= FSYNC_EVERY:
            self.out.flush()
            os.fsync(self.out.fileno())
            self.unsynced = 0

    def close(self) -> None:
        """Wait until every byte taken is written, flushed and hashed; re-raise a failure."""
        try:
            if self.chunks:
                self.hand_on()
            while self.pending:
                self.pending.popleft().result()
            self.out.flush()
        finally:
            self.writer.shutdown(wait=True)
            self.hasher.shutdown(wait=True)
