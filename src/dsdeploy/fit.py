"""Whether a model's files fit this machine: told before any byte is downloaded."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.errors import StoreError
from dsdeploy.model.architecture import Architecture
from dsdeploy.planner.memory import GIB, smallest_serving_bytes


def existing_parent(path: Path) -> Path:
    """The nearest folder that exists, so free space can be read before the store is made."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(existing_parent(folder)).free


def ensure_free_space(folder: Path, needed: int) -> None:
    """Refuse to start a download the disk cannot hold, instead of failing part-way."""
    free = free_bytes(folder)
    if needed > free:
        raise StoreError(
            f"not enough disk space: the download needs {needed / GIB:.2f} GiB, "
            f"{free / GIB:.2f} GiB free under {existing_parent(folder)}; free some space "
            "(`dsdeploy models gc` removes unused blobs) or set DSDEPLOY_HOME to a bigger disk"
        )


def memory_needed(weights_bytes: int, architecture: Architecture | None) -> int:
    """RAM a model needs to run: the planner's estimate for one request at a small context
    when the architecture is known (catalog models), else the weights alone (a file whose
    header has not been read yet)."""
    if architecture is None:
        return weights_bytes
    return smallest_serving_bytes(architecture, weights_bytes)


@dataclass(frozen=True)
class Fit:
    download_bytes: int
    disk_free: int
    memory_needed: int
    ram_available: int

    @property
    def disk_ok(self) -> bool:
        return self.download_bytes <= self.disk_free

    @property
    def ram_ok(self) -> bool:
        return self.memory_needed <= self.ram_available

    def summary(self) -> str:
        disk = "fits" if self.disk_ok else "does NOT fit"
        ram = "fits" if self.ram_ok else "does NOT fit (it would swap or fail to load)"
        return (
            f"download {self.download_bytes / GIB:.2f} GiB, {self.disk_free / GIB:.2f} GiB "
            f"free on disk: {disk}; needs about {self.memory_needed / GIB:.2f} GiB of memory, "
            f"{self.ram_available / GIB:.2f} GiB available: {ram}"
        )


def assess(
    download_bytes: int,
    weights_bytes: int,
    store_root: Path,
    ram_available: int,
    architecture: Architecture | None = None,
) -> Fit:
    return Fit(
        download_bytes=download_bytes,
        disk_free=free_bytes(store_root),
        memory_needed=memory_needed(weights_bytes, architecture),
        ram_available=ram_available,
    )
