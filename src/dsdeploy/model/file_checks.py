"""The structure checks every model file passes before an engine is given it, remembered.

A file that passed is recorded by its identity (real path, size, mtime, inode, device) and
the checker's version, so an engine restart or a second ``serve`` does not read it again,
while a file replaced or touched since is checked anew.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dsdeploy.gguf_parts import split_part
from dsdeploy.model.gguf_check import check_gguf_model
from dsdeploy.model.safetensors_check import check_safetensors

CHECKER_VERSION = 1
"""Raised when the checks change, so earlier verdicts no longer count."""


def model_files(entry: Path) -> list[Path]:
    """The files behind what an engine is given: a GGUF (with its split's other parts), or a
    checkpoint folder's safetensors."""
    if entry.is_dir():
        return sorted(entry.rglob("*.safetensors"))
    part = split_part(entry.name)
    if part is None:
        return [entry]
    pattern = f"{Path(part.prefix).name}-*-of-{part.count:05d}.gguf"
    return sorted({entry, *entry.parent.glob(pattern)})


def identity(files: list[Path]) -> str:
    lines = [f"checker {CHECKER_VERSION}"]
    for path in files:
        stat = path.stat()
        lines.append(
            f"{os.path.realpath(path)} {stat.st_size} {stat.st_mtime_ns} {stat.st_ino} "
            f"{stat.st_dev}"
        )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def check_entry(entry: Path) -> None:
    """Raise ``ModelFileRejected`` unless every file behind ``entry`` is well formed."""
    if entry.is_dir():
        for path in model_files(entry):
            check_safetensors(path, str(path.relative_to(entry)))
    else:
        check_gguf_model(entry)


class ModelChecks:
    """What every engine launch asks first; passes are remembered as empty files in
    ``verdicts`` (a folder in the cache: losing it only costs a re-read)."""

    def __init__(self, verdicts: Path) -> None:
        self.verdicts = verdicts

    def require(self, entry: Path) -> None:
        """Check ``entry`` unless these very files passed before."""
        try:
            passed = self.verdicts / identity(model_files(entry))
        except OSError:  # missing or unreadable: the check says so in its own words
            check_entry(entry)
            raise
        if passed.exists():
            return
        check_entry(entry)
        self.verdicts.mkdir(parents=True, exist_ok=True)
        passed.touch()
