"""Which ``llama-server`` to use, and whether it has been seen to run on this machine.

Order of preference: the binary named in settings, one already on PATH, then our own
build. Our builds are smoke-tested before they enter the cache; a binary of someone
else's is smoke-tested the first time dsdeploy uses it, and the verdict is remembered for
that file (path, size, modification time) on this CPU.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from dsdeploy.cpu_isa import CpuAnswers, read_cpu_answers
from dsdeploy.engines.llamacpp_install import (
    InstalledEngine,
    build_key,
    built_binary,
    built_engine,
    choose_backend,
    cpu_signature,
    engine_root,
    read_version,
)
from dsdeploy.engines.llamacpp_smoke import SmokeSubject, smoke_test
from dsdeploy.errors import EngineNotInstalled
from dsdeploy.paths import Dirs


def built_engines(dirs: Dirs) -> Iterator[InstalledEngine]:
    for info_path in sorted(engine_root(dirs).glob("*/info.json")):
        if built_binary(dirs, info_path.parent.name).exists():
            yield built_engine(dirs, info_path.parent.name)


def candidate(
    dirs: Dirs, configured: Path | None, backend: str, cpu: CpuAnswers | None = None
) -> tuple[Path, str] | None:
    """The binary ``locate`` would use and its origin, without running it (``doctor`` runs
    it itself, to explain a binary that dies)."""
    if configured is not None:
        return configured, "settings"
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path), "PATH"
    binary = built_binary(dirs, build_key(choose_backend(backend), cpu or read_cpu_answers()))
    return (binary, "built") if binary.exists() else None


def locate(
    dirs: Dirs, configured: Path | None, backend: str, cpu: CpuAnswers | None = None
) -> InstalledEngine | None:
    found = candidate(dirs, configured, backend, cpu)
    if found is None:
        return None
    binary, origin = found
    if origin == "built":
        return built_engine(dirs, binary.parent.parent.name)
    if not binary.exists():
        raise EngineNotInstalled(f"DSDEPLOY_LLAMA_SERVER points at {binary}, which does not exist")
    return InstalledEngine(binary, read_version(binary), origin)


def proof_record(dirs: Dirs, binary: Path, cpu: CpuAnswers) -> Path:
    """Where the verdict on one binary file, on this CPU, is kept."""
    stat = binary.resolve().stat()
    identity = f"{binary.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{cpu_signature(cpu)}"
    name = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return engine_root(dirs) / "proven" / f"{name}.json"


def proven_here(dirs: Dirs, found: InstalledEngine, cpu: CpuAnswers | None = None) -> bool:
    """Builds are proven before they are cached; other binaries once their record exists."""
    if found.origin == "built":
        return True
    return proof_record(dirs, found.binary, cpu or read_cpu_answers()).exists()


def prove(dirs: Dirs, found: InstalledEngine, subject: SmokeSubject) -> None:
    """Smoke-test a binary that dsdeploy did not build, once; EngineSmokeFailed if it fails."""
    cpu = read_cpu_answers()
    if proven_here(dirs, found, cpu):
        return
    record = proof_record(dirs, found.binary, cpu)
    record.parent.mkdir(parents=True, exist_ok=True)
    smoke_test(found.binary, subject, record.with_suffix(".log"))
    verdict = {"binary": str(found.binary), "version": found.version, "model": subject.name}
    record.write_text(json.dumps(verdict, indent=2))
