"""The llama-server binary: there, runs here, and built for what this machine allows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from dsdeploy.cpu_isa import EXTENSIONS, CpuAnswers, unusable_reason
from dsdeploy.doctor.finding import Finding, ok
from dsdeploy.engines.exit_status import explain_signal, signal_name
from dsdeploy.engines.llamacpp_install import version_line

REBUILD = "dsdeploy engine install --rebuild"


def check_present(found: tuple[Path, str] | None) -> list[Finding]:
    if found is None:
        return [
            Finding(
                "engine",
                "warn",
                "no llama-server yet (none in settings, on PATH or built for this machine)",
                "dsdeploy engine install",
            )
        ]
    binary, origin = found
    if not binary.exists():
        return [
            Finding(
                "engine",
                "fail",
                f"DSDEPLOY_LLAMA_SERVER points at {binary}, which does not exist",
                "point DSDEPLOY_LLAMA_SERVER at a llama-server binary, or unset it and run "
                "`dsdeploy engine install`",
            )
        ]
    return [ok("engine", f"{binary} (from {origin})")]


def run_version(binary: Path) -> tuple[Finding, str | None]:
    """Run ``--version``: the cheapest way to learn whether the binary starts on this CPU
    and this C library at all. Returns the finding and the version line."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        return Finding(
            "engine-runs",
            "fail",
            f"cannot run {binary}: {exc.strerror}",
            f"`chmod +x {binary}`, or {REBUILD}",
        ), None
    except subprocess.TimeoutExpired:
        return Finding(
            "engine-runs", "fail", f"{binary} --version did not finish in 30 s", REBUILD
        ), None
    if signal_name(done.returncode):
        # No model is loaded by --version: a signal here is the build's fault, not memory's
        # or a model file's, so the fix is always a build for this machine.
        why = explain_signal(done.returncode, loading=False)
        return Finding("engine-runs", "fail", f"{binary} --version: {why}", REBUILD), None
    version = version_line(done.stdout + done.stderr)
    if version is None:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Finding(
            "engine-runs",
            "fail",
            f"{binary} --version exited {done.returncode} without a version line: {last}",
            f"point DSDEPLOY_LLAMA_SERVER at a llama-server binary, or {REBUILD}",
        ), None
    return ok("engine-runs", f"llama-server {version}"), version


def build_info(binary: Path) -> dict[str, Any] | None:
    """The info.json a dsdeploy build keeps beside its ``bin/`` folder, if this is one."""
    info = binary.resolve().parent.parent / "info.json"
    return json.loads(info.read_text()) if info.is_file() else None


def source_tree_of(binary: Path, info: dict[str, Any] | None) -> Path | None:
    """The source tree a dsdeploy build was compiled from: the build's folder is named
    ``<source version>-<backend>-…`` beside ``source-<source version>``."""
    if info is None or "backend" not in info:
        return None
    build = binary.resolve().parent.parent
    version, sep, _ = build.name.partition(f"-{info['backend']}-")
    tree = build.parent / f"source-{version}"
    return tree if sep and tree.is_dir() else None


def check_isa(info: dict[str, Any] | None, cpu: CpuAnswers) -> list[Finding]:
    """A build records the extensions it may execute; each must be listed by this CPU and
    enabled by this kernel, or the first such instruction kills the engine with SIGILL."""
    if info is None:
        return [ok("engine-isa", "not a dsdeploy build: no recorded ISA (its run is the test)")]
    isa = info.get("isa", {})
    if "enabled" not in isa:
        return [ok("engine-isa", f"built as {isa.get('tag', 'unknown')}; its run is the test")]
    problems = []
    for extension in EXTENSIONS:
        if extension.name not in isa["enabled"]:
            continue
        if extension.listed_by not in cpu.flags:
            problems.append(f"{extension.name}: used by the build, not listed by this CPU")
            continue
        reason = unusable_reason(extension, cpu)
        if reason is not None:
            problems.append(reason)
    if problems:
        return [
            Finding(
                "engine-isa",
                "fail",
                "the engine was built for instructions this machine cannot run: "
                + "; ".join(problems),
                REBUILD,
            )
        ]
    used = ", ".join(isa["enabled"]) or "baseline x86-64"
    return [ok("engine-isa", f"built for {used}: all usable here")]
