"""Measure how fast this machine reads memory: the ceiling on decode speed.

Decoding one token reads every active weight once, so tokens/s can never exceed
bandwidth ÷ bytes per token. Datasheet numbers overstate what one process sees, so
``plan`` and ``bench`` measure it: each thread sums its own slice of an array far larger
than the caches (numpy releases the GIL inside the reduction), best of a few passes.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

DEFAULT_BYTES = 512 * 1024 * 1024
"""Large enough to defeat any CPU cache; small enough to allocate anywhere."""


def measure_read_bandwidth(threads: int, size: int = DEFAULT_BYTES, passes: int = 5) -> float:
    """Bytes per second read by ``threads`` threads together, best of ``passes``."""
    if threads < 1 or size < threads * 8 or passes < 1:
        raise ValueError("need at least one thread, one pass and 8 bytes per thread")
    data = np.ones(size // 8, dtype=np.float64)
    slices = np.array_split(data, threads)
    best = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(passes):
            start = time.perf_counter()
            list(pool.map(np.sum, slices))
            elapsed = time.perf_counter() - start
            best = max(best, data.nbytes / elapsed)
    return best


@functools.cache
def planning_bandwidth(threads: int) -> float:
    """``measure_read_bandwidth`` once per process: ``serve`` plans every model it serves
    (and plans a model again on each reload), and each measurement allocates 512 MiB and
    takes seconds on a busy machine."""
    return measure_read_bandwidth(threads)
