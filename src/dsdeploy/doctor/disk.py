"""The folders dsdeploy writes to: present, writable, and with room for the models."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from dsdeploy.doctor.finding import Finding, Repair, ok
from dsdeploy.fit import existing_parent, free_bytes
from dsdeploy.planner.memory import GIB
from dsdeploy.store import Store


def mount_point(path: Path) -> Path:
    path = existing_parent(path).resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def unwritable_fix(folder: Path, error: OSError) -> str:
    if error.errno == errno.EROFS:
        return (
            f"its filesystem is mounted read-only: `mount -o remount,rw {mount_point(folder)}`, "
            "or set DSDEPLOY_HOME to a folder on a writable disk"
        )
    return f"`chown -R $(id -u):$(id -g) {folder}`, or set DSDEPLOY_HOME to a folder you own"


def check_folder(label: str, folder: Path) -> list[Finding]:
    """A folder dsdeploy must write: missing is fixed by creating it; a file in its place or
    a read-only disk stops every pull and serve."""
    check = f"{label}-dir"
    if not folder.exists():
        parent = existing_parent(folder)
        if parent.is_dir() and os.access(parent, os.W_OK):
            return [
                Finding(
                    check,
                    "warn",
                    f"{folder} does not exist yet",
                    f"mkdir -p -m 700 {folder}",
                    Repair("mkdir", folder, 0o700),
                )
            ]
        folder = parent
    if not folder.is_dir():
        return [
            Finding(
                check,
                "fail",
                f"{folder} is a file, not a folder",
                f"move it away: `mv {folder} {folder}.bak`, or set DSDEPLOY_HOME elsewhere",
            )
        ]
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [
            Finding(
                check,
                "fail",
                f"cannot write in {folder}: {exc.strerror}",
                unwritable_fix(folder, exc),
            )
        ]
    return [ok(check, f"{folder} is writable")]


def stored_bytes(store: Store) -> tuple[int, int]:
    """Bytes of every blob the manifests name (shared blobs once), and the largest model."""
    seen: dict[str, int] = {}
    largest = 0
    for manifest in store.manifests_all():
        largest = max(largest, sum(f.size for f in manifest.files))
        seen.update({f.sha256: f.size for f in manifest.files})
    return sum(seen.values()), largest


def check_space(store: Store, cache: Path) -> list[Finding]:
    """A pull needs the whole download free before it starts (``pull.check_fit``); the
    largest stored model is what pulling a new revision of it would need again."""
    total, largest = stored_bytes(store)
    free = free_bytes(store.root)
    where = f"{free / GIB:.1f} GiB free under {existing_parent(store.root)}"
    findings: list[Finding] = []
    if largest and free < largest:
        findings.append(
            Finding(
                "disk",
                "warn",
                f"{where}; stored models take {total / GIB:.2f} GiB and pulling a new revision "
                f"of the largest needs {largest / GIB:.2f} GiB",
                "`dsdeploy models gc` removes unused blobs; or set DSDEPLOY_HOME to a bigger disk",
            )
        )
    else:
        findings.append(ok("disk", f"{where}; stored models take {total / GIB:.2f} GiB"))
    if mount_point(cache) != mount_point(store.root):
        findings.append(
            ok(
                "cache-disk",
                f"{free_bytes(cache) / GIB:.1f} GiB free for engine builds under "
                f"{existing_parent(cache)}",
            )
        )
    return findings
