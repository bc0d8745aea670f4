"""The engine is built for what this machine's OS really allows, decided from the answers the
CPU and kernel give; recorded answers of other machines check the rules."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from dsdeploy.cpu_isa import CpuAnswers, IsaDecision, decide, read_cpu_answers, read_xcomp_supported
from dsdeploy.engines import llamacpp_install
from dsdeploy.engines.exit_status import explain_signal
from dsdeploy.engines.llamacpp_patches import patches_digest

FIXTURES = Path(__file__).parent / "fixtures" / "cpus"


def recorded(name: str) -> CpuAnswers:
    """A machine's /proc/cpuinfo flags and its kernel's ARCH_GET_XCOMP_SUPP answer."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return CpuAnswers(
        machine=data["machine"],
        flags=frozenset(data["flags"].split()),
        xcomp_supported=int(data["xcomp_supported"], 16),
    )


SPR_VM = recorded("intel-spr-kvm-amx-disabled")
SPR_METAL = recorded("intel-spr-metal-amx")
ZEN3 = recorded("amd-epyc-zen3-kvm")


def test_amx_listed_but_not_enabled_by_the_kernel_is_left_out() -> None:
    decision = decide(SPR_VM)
    assert decision.disabled == ("amx",)
    assert decision.compiler_flags == ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
    assert "18" in decision.reasons[0] and "0x202e7" in decision.reasons[0]


def test_avx512_is_kept_where_the_kernel_enables_it() -> None:
    assert "avx512" not in decide(SPR_VM).disabled


def test_amx_is_kept_where_the_kernel_enables_tile_data() -> None:
    decision = decide(SPR_METAL)
    assert decision.disabled == ()
    assert decision.tag == "native"


def test_a_cpu_without_avx512_or_amx_builds_native() -> None:
    decision = decide(ZEN3)
    assert (decision.disabled, decision.compiler_flags, decision.tag) == ((), (), "native")


def test_conservative_set_drops_avx512_and_amx_but_keeps_avx2() -> None:
    decision = decide(SPR_METAL, conservative=True)
    assert decision.disabled == ("avx512", "amx")
    assert "-mno-avx512f" in decision.compiler_flags
    assert "-mno-avx" not in decision.compiler_flags


def test_conservative_set_on_a_cpu_without_them_changes_nothing() -> None:
    """So a SIGILL there is final: rebuilding would make the same binary."""
    assert decide(ZEN3, conservative=True).disabled == decide(ZEN3).disabled


def test_kernel_too_old_to_grant_amx_leaves_it_out() -> None:
    old_kernel = CpuAnswers(SPR_METAL.machine, SPR_METAL.flags, xcomp_supported=None)
    decision = decide(old_kernel)
    assert decision.disabled == ("amx",)
    assert "5.16" in decision.reasons[0]


def test_avx512_without_its_register_state_is_left_out() -> None:
    no_zmm = CpuAnswers("x86_64", SPR_METAL.flags, xcomp_supported=0x602E7 & ~0xE0)
    assert decide(no_zmm).disabled == ("avx512",)


def test_other_architectures_get_no_x86_flags() -> None:
    arm = CpuAnswers("aarch64", frozenset({"fp", "asimd", "sve"}), xcomp_supported=None)
    assert decide(arm).compiler_flags == ()


def test_the_same_cpu_with_another_kernel_answer_is_another_build() -> None:
    enabled = CpuAnswers(SPR_VM.machine, SPR_VM.flags, xcomp_supported=0x602E7)
    assert llamacpp_install.build_key("cpu", SPR_VM) != llamacpp_install.build_key("cpu", enabled)
    assert llamacpp_install.build_key("cpu", SPR_VM) == llamacpp_install.build_key("cpu", SPR_VM)


def test_build_key_names_version_patches_backend_and_machine() -> None:
    key = llamacpp_install.build_key("cpu", ZEN3)
    assert key.startswith(f"{llamacpp_install.SDIST_VERSION}-p{patches_digest()}-cpu-x86_64-")
    assert key.endswith(llamacpp_install.cpu_signature(ZEN3))


@pytest.mark.skipif(
    not (os.uname().sysname == "Linux" and os.uname().machine == "x86_64"), reason="x86_64 Linux"
)
def test_this_kernel_reports_avx_state_exactly_when_cpuinfo_lists_avx() -> None:
    supported = read_xcomp_supported()
    assert supported is not None
    assert bool(supported >> 2 & 1) == ("avx" in read_cpu_answers().flags)


def test_unusable_extensions_go_to_the_compiler_as_c_and_cxx_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in cmake on PATH records how the real build would be configured."""
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "cmake"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {calls}\necho ---- >> {calls}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    llamacpp_install.compile_tree(
        tmp_path / "src",
        tmp_path / "build",
        backend="cpu",
        isa=decide(SPR_VM),
        jobs=2,
        progress=lambda done, total: None,
        log=tmp_path / "build.log",
    )
    configure = calls.read_text().split("----\n")[0].splitlines()
    wanted = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    assert f"-DCMAKE_C_FLAGS={wanted}" in configure
    assert f"-DCMAKE_CXX_FLAGS={wanted}" in configure


def test_sigill_is_explained_with_the_command_that_fixes_it() -> None:
    text = explain_signal(-signal.SIGILL, loading=True)
    assert "SIGILL" in text and "CPU instruction" in text
    assert "dsdeploy engine install --rebuild" in text


def test_sigkill_at_load_points_at_memory_with_the_plans_figure() -> None:
    text = explain_signal(-signal.SIGKILL, loading=True, planned_bytes=3 * 2**30)
    assert "out-of-memory" in text and "the plan needs 3.00 GiB" in text


def test_a_plain_exit_code_is_not_called_a_signal() -> None:
    assert explain_signal(1, loading=True) == "it exited with code 1"


def predefined_macros(flags: list[str]) -> set[str]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    done = subprocess.run(
        [compiler, *flags, "-dM", "-E", "-"], input="", capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"{compiler} does not know -march=sapphirerapids")
    return {line.split()[1] for line in done.stdout.splitlines() if line.startswith("#define")}


@pytest.mark.parametrize(
    ("decision", "gone", "kept"),
    [
        (decide(SPR_VM), {"__AMX_TILE__", "__AMX_INT8__", "__AMX_BF16__"}, {"__AVX512F__"}),
        (
            decide(SPR_METAL, conservative=True),
            {"__AMX_TILE__", "__AVX512F__", "__AVX512FP16__"},
            {"__AVX2__", "__FMA__", "__F16C__"},
        ),
    ],
    ids=["amx-off", "conservative"],
)
def test_the_compiler_honours_the_decision_over_march(
    decision: IsaDecision, gone: set[str], kept: set[str]
) -> None:
    """CMake puts CMAKE_C_FLAGS before ggml's -march=native; the -mno flags must still win.
    Checked with the Sapphire Rapids target, which any x86-64 GCC or Clang can compile for."""
    macros = predefined_macros([*decision.compiler_flags, "-march=sapphirerapids"])
    assert not gone & macros
    assert kept <= macros
