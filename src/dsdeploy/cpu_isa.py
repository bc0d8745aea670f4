"""Which x86 instruction-set extensions a process may really use here.

``/proc/cpuinfo`` lists what CPUID advertises. An extension with its own register state
(AVX's YMM, AVX-512's ZMM and mask registers, AMX's tiles) also needs the kernel to enable
that state, and cloud VMs often advertise AMX without enabling it: code compiled with
``-march=native`` then dies with SIGILL on its first tile instruction, even though ggml's
own runtime check (``ARCH_REQ_XCOMP_PERM``) passes. The kernel's answer is
``arch_prctl(ARCH_GET_XCOMP_SUPP)``, the XSAVE components it supports (Linux 5.16+):
bit 2 YMM, bits 5-7 AVX-512, bits 17-18 AMX tile config and data
(Intel SDM vol. 1, 13.1; linux ``arch/x86/include/asm/fpu/types.h``).
"""

from __future__ import annotations

import ctypes
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

SYS_ARCH_PRCTL = 158  # x86_64
ARCH_GET_XCOMP_SUPP = 0x1021


@dataclass(frozen=True)
class Extension:
    """A family of instructions that share one piece of register state."""

    name: str
    listed_by: str
    """The cpuinfo flag that says the CPU has it."""
    xstate_bits: tuple[int, ...]
    """XSAVE components the kernel must enable before the instructions can run."""
    disable_flags: tuple[str, ...]
    """GCC/Clang flags that take it (and everything built on it) out of -march=native."""


EXTENSIONS = (
    Extension("avx", "avx", (1, 2), ("-mno-avx",)),
    Extension("avx512", "avx512f", (5, 6, 7), ("-mno-avx512f",)),
    Extension("amx", "amx_tile", (17, 18), ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")),
)
CONSERVATIVE_OFF = ("avx512", "amx")
"""Left out after a build crashed anyway: AVX2/FMA/F16C remain, which is what nearly every
x86-64 server of the last ten years runs."""


@dataclass(frozen=True)
class CpuAnswers:
    """What this machine says about itself; recorded answers of other machines test the rules."""

    machine: str
    flags: frozenset[str]
    xcomp_supported: int | None
    """``ARCH_GET_XCOMP_SUPP``; None where the kernel has no such call (or not Linux x86_64)."""
    os: str = "linux"


@dataclass(frozen=True)
class IsaDecision:
    """What the engine is built without, and why; its ``tag`` is part of the build's cache key."""

    disabled: tuple[str, ...]
    reasons: tuple[str, ...]
    compiler_flags: tuple[str, ...]
    conservative: bool = False
    enabled: tuple[str, ...] = ()
    """Extensions the CPU lists and the build keeps: what the binary may execute, recorded
    in its info.json so a binary moved to another machine can be checked there."""

    @property
    def tag(self) -> str:
        if not self.disabled:
            return "native"
        return "native-no-" + "-".join(self.disabled)


def cpuinfo_flags(cpuinfo: str) -> frozenset[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return frozenset(value.split())
    return frozenset()


def read_xcomp_supported() -> int | None:
    """The XSAVE components the kernel enables for user space, or None if it cannot say."""
    if not sys.platform.startswith("linux") or platform.machine() != "x86_64":
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    mask = ctypes.c_uint64()
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_SUPP, ctypes.byref(mask)) != 0:
        return None  # kernels before 5.16 answer EINVAL
    return mask.value


def read_cpu_answers() -> CpuAnswers:
    cpuinfo = Path("/proc/cpuinfo")
    return CpuAnswers(
        machine=platform.machine(),
        flags=cpuinfo_flags(cpuinfo.read_text()) if cpuinfo.exists() else frozenset(),
        xcomp_supported=read_xcomp_supported(),
        os=sys.platform,
    )


def unusable_reason(extension: Extension, answers: CpuAnswers) -> str | None:
    """Why an extension the CPU lists cannot run here, or None if it can (or is not listed)."""
    if extension.listed_by not in answers.flags:
        return None
    supported = answers.xcomp_supported
    if supported is None:
        # Older kernels clear AVX and AVX-512 from cpuinfo themselves when their state is
        # off, but cannot grant AMX at all (the permission call came with 5.16).
        if extension.name == "amx" and answers.os.startswith("linux"):
            return "amx: listed by the CPU, but this kernel cannot grant AMX (before Linux 5.16)"
        return None
    missing = [bit for bit in extension.xstate_bits if not supported >> bit & 1]
    if not missing:
        return None
    return (
        f"{extension.name}: listed by the CPU, but the kernel does not enable its register "
        f"state (XSAVE components {', '.join(map(str, missing))} absent from "
        f"ARCH_GET_XCOMP_SUPP = {supported:#x})"
    )


def decide(answers: CpuAnswers, *, conservative: bool = False) -> IsaDecision:
    """Leave out every extension the CPU lists but the OS does not let a process use.

    ``conservative`` also leaves out AVX-512 and AMX, for a rebuild after a crash."""
    if answers.machine not in {"x86_64", "AMD64", "amd64"}:
        return IsaDecision((), (), ())
    disabled: list[str] = []
    reasons: list[str] = []
    flags: list[str] = []
    enabled: list[str] = []
    for extension in EXTENSIONS:
        reason = unusable_reason(extension, answers)
        listed = extension.listed_by in answers.flags
        if reason is None and conservative and listed and extension.name in CONSERVATIVE_OFF:
            reason = f"{extension.name}: left out after a native build crashed here"
        if reason is not None:
            disabled.append(extension.name)
            reasons.append(reason)
            flags.extend(extension.disable_flags)
        elif listed:
            enabled.append(extension.name)
    return IsaDecision(tuple(disabled), tuple(reasons), tuple(flags), conservative, tuple(enabled))
