"""Symbol versions an ELF file needs and the ones a shared library defines, read with a
real ELF parser (pyelftools) rather than guessed from file names.

A binary built against a newer C or C++ runtime records, in ``.gnu.version_r``, each
library it needs and the version nodes it uses from it (``GLIBC_2.34``,
``GLIBCXX_3.4.30``); a library lists the nodes it provides in ``.gnu.version_d``. The
dynamic loader refuses to start the binary when one needed node is missing, with
"version `GLIBCXX_3.4.30' not found". Which library file the loader picks follows
ld.so(8): DT_RPATH (without DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH, the ldconfig cache,
then the default folders.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection

DEFAULT_DIRS = tuple(
    Path(p)
    for p in (
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    )
)


@dataclass(frozen=True)
class ElfFacts:
    machine: str
    elfclass: int
    needed: tuple[str, ...]
    """DT_NEEDED: the shared libraries the loader must find."""
    search: tuple[Path, ...]
    """DT_RPATH or DT_RUNPATH folders, ``$ORIGIN`` expanded."""
    runpath: bool
    """True when the folders came from DT_RUNPATH (searched after LD_LIBRARY_PATH)."""
    version_needs: dict[str, frozenset[str]]
    """Library file name → version nodes needed from it."""


def read_facts(path: Path) -> ElfFacts:
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        needed: list[str] = []
        rpath: list[str] = []
        runpath: list[str] = []
        needs: dict[str, frozenset[str]] = {}
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    entry: Any = tag  # pyelftools sets needed/rpath/runpath per tag kind
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(entry.needed)
                    elif tag.entry.d_tag == "DT_RPATH":
                        rpath += entry.rpath.split(":")
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        runpath += entry.runpath.split(":")
            elif isinstance(section, GNUVerNeedSection):
                for verneed, auxiliaries in section.iter_versions():
                    needs[str(verneed.name)] = frozenset(aux.name for aux in auxiliaries)
        origin = str(path.resolve().parent)
        folders = tuple(
            Path(p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
            for p in (runpath or rpath)
            if p
        )
        return ElfFacts(
            elf["e_machine"], elf.elfclass, tuple(needed), folders, bool(runpath), needs
        )


def defined_versions(library: Path) -> frozenset[str]:
    """The version nodes a shared library provides (its own soname node included)."""
    with library.open("rb") as handle:
        section = ELFFile(handle).get_section_by_name(".gnu.version_d")
        if not isinstance(section, GNUVerDefSection):
            return frozenset()
        return frozenset(next(auxiliaries).name for _verdef, auxiliaries in section.iter_versions())


def ldconfig_cache() -> dict[str, list[Path]]:
    """``ldconfig -p``: library name → the files the loader's cache maps it to."""
    try:
        done = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        try:
            done = subprocess.run(
                ["/sbin/ldconfig", "-p"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return {}
    cache: dict[str, list[Path]] = {}
    for match in re.finditer(r"^\s*(\S+) \(([^)]*)\) => (\S+)$", done.stdout, re.MULTILINE):
        cache.setdefault(match[1], []).append(Path(match[3]))
    return cache


def same_kind(candidate: Path, facts: ElfFacts) -> bool:
    """The loader skips a library of another architecture or word size."""
    try:
        with candidate.open("rb") as handle:
            elf = ELFFile(handle)
            return bool(elf["e_machine"] == facts.machine and elf.elfclass == facts.elfclass)
    except (OSError, ELFError):  # not an ELF file: the loader skips it too
        return False


def resolve(
    name: str,
    facts: ElfFacts,
    library_path: tuple[Path, ...],
    cache: dict[str, list[Path]],
) -> Path | None:
    """The file the dynamic loader would load for ``name`` (ld.so(8) search order)."""
    before = () if facts.runpath else facts.search
    after = facts.search if facts.runpath else ()
    folders = [*before, *library_path, *after]
    candidates = [folder / name for folder in folders]
    candidates += cache.get(name, [])
    candidates += [folder / name for folder in DEFAULT_DIRS]
    for candidate in candidates:
        if candidate.is_file() and same_kind(candidate, facts):
            return candidate
    return None


def version_key(node: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", node))
