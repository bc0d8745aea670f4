"""The parts of a split GGUF: how llama.cpp names them, and whether a set of files is one
whole model.

A model too big for one file (DeepSeek-V3/R1 quants are 130–700 GB) is published as parts
named ``<prefix>-00001-of-00005.gguf`` … ``<prefix>-00005-of-00005.gguf``, as
``llama-gguf-split`` and gguf-py's writer name them. llama.cpp is given the first part and
opens the others next to it by that name (``llama_split_path``: ``%s-%05d-of-%05d.gguf``),
so the names are part of the format: they are kept, and checked, from listing to folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from dsdeploy.errors import SourceError

PART_NAME = re.compile(r"^(?P<prefix>.+)-(?P<number>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass(frozen=True)
class Part:
    prefix: str
    """Everything before ``-0000i-of-0000n.gguf``, folders included."""
    number: int
    count: int


def split_part(path: str) -> Part | None:
    """Which part ``path`` is, or None for a whole (unsplit) file."""
    match = PART_NAME.match(path)
    if match is None:
        return None
    return Part(match["prefix"], int(match["number"]), int(match["count"]))


def part_name(prefix: str, number: int, count: int) -> str:
    """The name llama.cpp looks for: its ``llama_split_path``."""
    return f"{prefix}-{number:05d}-of-{count:05d}.gguf"


def is_first_part(path: str) -> bool:
    """True for the file an engine is given: a whole file, or part 1 of a split."""
    part = split_part(path)
    return part is None or part.number == 1


def one_model(paths: list[str], what: str) -> list[str]:
    """``paths`` in load order, if they are one model: a single file, or every part of one
    split; otherwise an error that says what is extra or missing."""
    parts = {path: split_part(path) for path in paths}
    series = {(p.prefix, p.count) for p in parts.values() if p is not None}
    if len(paths) == 1 and not series:
        return paths
    if len(series) != 1 or None in parts.values():
        names = sorted(PurePosixPath(p).name for p in paths)
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        raise SourceError(f"{what} is more than one model ({shown}); pick one with --include GLOB")
    (prefix, count), numbers = series.pop(), {p.number for p in parts.values() if p}
    missing = [str(n) for n in range(1, count + 1) if n not in numbers]
    if missing:
        raise SourceError(
            f"{what} is a GGUF split in {count} parts, and part {', '.join(missing)} is not "
            f"in the pull; take every part, e.g. with --include '{prefix}-*-of-{count:05d}.gguf'"
        )
    return sorted(paths)
