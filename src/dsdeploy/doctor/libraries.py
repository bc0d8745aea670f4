"""Whether the C and C++ runtimes the loader would pick provide every symbol version the
engine binary (and torch's libraries, when installed) were linked against."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

from elftools.common.exceptions import ELFError

from dsdeploy.doctor.elf_versions import (
    defined_versions,
    ldconfig_cache,
    read_facts,
    resolve,
    version_key,
)
from dsdeploy.doctor.finding import Finding, ok

RUNTIMES = ("libc.so.6", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1")
TORCH_LIBS = ("libtorch_cpu.so", "libtorch_python.so", "libc10.so")


def missing_fix(library: str, what: str) -> str:
    if library.startswith("libstdc++"):
        return (
            "install a newer libstdc++ (Debian/Ubuntu: `apt-get install libstdc++6` from a newer "
            "release; conda: `conda install -c conda-forge libstdcxx-ng`), or build the engine "
            "here against this one: `dsdeploy engine install --rebuild`"
            if what == "engine"
            else "`conda install -c conda-forge libstdcxx-ng` or a newer OS libstdc++6, or "
            "install a torch wheel built for this system"
        )
    if what == "engine":
        return "the engine was built on another system: `dsdeploy engine install --rebuild`"
    return "install a torch wheel built for this system (or upgrade the OS)"


def library_problem(
    binary: Path, library: str, needed: frozenset[str], found: Path | None
) -> str | None:
    """Why the loader would refuse ``library`` for ``binary``, or None."""
    if found is None:
        return f"{binary.name} needs {library}, which the loader cannot find"
    missing = sorted(needed - defined_versions(found), key=version_key)
    if missing:
        them = "it" if len(missing) == 1 else "them"
        return (
            f"{binary.name} needs {', '.join(missing)} from {library}, and {found} "
            f"does not define {them}"
        )
    return None


def check_binary(
    binary: Path,
    what: str,
    library_path: tuple[Path, ...] = (),
    cache: dict[str, list[Path]] | None = None,
) -> list[Finding]:
    """Every DT_NEEDED library must resolve, and define every version node the binary's
    ``.gnu.version_r`` asks of it in its ``.gnu.version_d``."""
    check = f"libs:{what}"
    try:
        facts = read_facts(binary)
    except ELFError:
        return [ok(check, f"{binary} is not an ELF file (a wrapper script?): nothing to load")]
    cache = ldconfig_cache() if cache is None else cache
    problems: list[Finding] = []
    for library in facts.needed:
        needed = facts.version_needs.get(library, frozenset())
        found = resolve(library, facts, library_path, cache)
        problem = library_problem(binary, library, needed, found)
        if problem is not None:
            problems.append(Finding(check, "fail", problem, missing_fix(library, what)))
    newest = [
        max(versions, key=version_key)
        for library, versions in sorted(facts.version_needs.items())
        if library in RUNTIMES and versions
    ]
    return problems or [
        ok(
            check,
            f"{binary.name}: all {len(facts.needed)} libraries found; needs up to "
            f"{', '.join(newest) or 'no versioned symbols'}, all defined",
        )
    ]


def torch_libraries() -> Iterator[Path]:
    """torch's main shared libraries, found without importing torch (seconds saved)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    for name in TORCH_LIBS:
        if (lib / name).is_file():
            yield lib / name


def check_libraries(engine: Path | None, library_path: tuple[Path, ...] = ()) -> list[Finding]:
    cache = ldconfig_cache()
    findings: list[Finding] = []
    if engine is not None and engine.is_file():
        findings += check_binary(engine, "engine", library_path, cache)
    for library in torch_libraries():
        findings += check_binary(library, f"torch/{library.name}", library_path, cache)
    return findings
