"""The ground under everything: operating system, kernel and Python."""

from __future__ import annotations

import platform
import re
import sys

from dsdeploy.cpu_isa import EXTENSIONS, CpuAnswers, unusable_reason
from dsdeploy.doctor.finding import Finding, ok

AMX_KERNEL = (5, 16)
"""The first Linux that can grant AMX tile state to a process (ARCH_REQ_XCOMP_PERM)."""
PYTHON_MIN = (3, 10)


def kernel_version(release: str) -> tuple[int, int]:
    """'6.8.0-45-generic' → (6, 8); (0, 0) when the release string has no version."""
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def check_os(system: str, release: str, cpu: CpuAnswers) -> list[Finding]:
    """Linux is what the engines, memfd hand-over and the ISA probe are built for; AMX
    needs 5.16+, and an extension the CPU lists but the kernel does not enable is named."""
    if system != "Linux":
        return [
            Finding(
                "os",
                "warn",
                f"{system} {release}: dsdeploy is built and tested on Linux",
                "run dsdeploy on a Linux machine (or a Linux VM/container)",
            )
        ]
    findings = [ok("os", f"Linux {release} on {cpu.machine}")]
    if "amx_tile" in cpu.flags and kernel_version(release) < AMX_KERNEL:
        findings.append(
            Finding(
                "kernel",
                "warn",
                f"the CPU has AMX but Linux {release} is older than 5.16, which cannot "
                "enable AMX state: matrix kernels run without it (slower)",
                "upgrade the kernel to 5.16 or newer (e.g. the distribution's HWE kernel)",
            )
        )
    reasons = [r for r in (unusable_reason(e, cpu) for e in EXTENSIONS) if r is not None]
    if reasons:
        findings.append(
            ok(
                "cpu-state",
                "the engine is built without what the kernel does not enable: "
                + "; ".join(reasons),
            )
        )
    return findings


def check_python(version: tuple[int, int, int], prefix: str, base_prefix: str) -> list[Finding]:
    text = ".".join(map(str, version))
    findings: list[Finding] = []
    if version[:2] < PYTHON_MIN:
        findings.append(
            Finding(
                "python",
                "fail",
                f"Python {text} is older than 3.10",
                "install Python 3.10 or newer and reinstall dsdeploy with it",
            )
        )
    else:
        findings.append(ok("python", f"Python {text}"))
    if prefix == base_prefix:
        findings.append(
            Finding(
                "venv",
                "warn",
                f"not in a virtual environment (packages go to {prefix})",
                "python3 -m venv ~/.venvs/dsdeploy && ~/.venvs/dsdeploy/bin/pip install dsdeploy",
            )
        )
    else:
        findings.append(ok("venv", f"virtual environment {prefix}"))
    return findings


def this_system() -> tuple[str, str]:
    return platform.system(), platform.release()


def this_python() -> tuple[tuple[int, int, int], str, str]:
    major, minor, micro = sys.version_info[:3]
    return (major, minor, micro), sys.prefix, sys.base_prefix
