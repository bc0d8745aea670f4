"""Find or build llama.cpp's ``llama-server``.

Order of preference: the binary named in settings, one already on PATH, then our own
build. Builds come from the llama.cpp tree that the pinned ``llama-cpp-python`` sdist
vendors (the only llama.cpp source on the package index), compiled once per version,
backend and CPU, and cached: a second install costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from dsdeploy.cpu_isa import CpuAnswers, IsaDecision, decide, read_cpu_answers
from dsdeploy.engines.llamacpp_patches import apply_patches, patches_digest
from dsdeploy.engines.llamacpp_smoke import SmokeSubject, run_bench, smoke_test
from dsdeploy.errors import EngineBuildFailed, EngineNotInstalled, EngineSmokeFailed
from dsdeploy.paths import Dirs
from dsdeploy.progress import ProgressHook

SDIST_REQUIREMENT = "llama-cpp-python==0.3.36"
"""Vendors llama.cpp at commit 0c1e570; bump it to move to a newer llama.cpp."""
SDIST_VERSION = SDIST_REQUIREMENT.split("==")[1]
TARGETS = ("llama-server", "llama-bench", "llama-quantize", "llama-perplexity")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries that survive being moved
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # would try to download the web UI
)
CUDA_FLAGS = ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native")
PERCENT = re.compile(r"^\[\s*(\d+)%\]")


@dataclass(frozen=True)
class InstalledEngine:
    binary: Path
    version: str
    origin: str
    """'settings', 'PATH' or 'built'."""
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    """A build's ``info.json``: ISA decision, build and smoke-test times, llama-bench speed."""


def read_version(binary: Path) -> str:
    """The first line of ``llama-server --version``, e.g. '0.5.0-dev (build 1, commit 0c1e570)'."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise EngineNotInstalled(f"cannot run {binary}: {exc.strerror}") from None
    version = version_line(done.stdout + done.stderr)
    if version is None:
        raise EngineNotInstalled(f"{binary} does not look like llama-server (no version line)")
    return version


def version_line(output: str) -> str | None:
    """What follows ``version:`` in ``llama-server --version`` output, if any."""
    for line in output.splitlines():
        if line.startswith("version:"):
            return line.removeprefix("version:").strip()
    return None


def nvidia_gpu_present() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    done = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "GPU" in done.stdout


def find_nvcc() -> str | None:
    default = Path("/usr/local/cuda/bin/nvcc")  # where CUDA installs when not on PATH
    return shutil.which("nvcc") or (str(default) if default.exists() else None)


def choose_backend(requested: str) -> str:
    """CUDA needs both the toolkit and a GPU: nvcc alone would compile for hours for nothing."""
    if requested != "auto":
        return requested
    return "cuda" if find_nvcc() and nvidia_gpu_present() else "cpu"


def cpu_signature(cpu: CpuAnswers) -> str:
    """Builds use -march=native minus what the OS does not allow, so a build is valid only
    where the CPU lists the same flags and the kernel enables the same register state."""
    flags = " ".join(sorted(cpu.flags))
    state = "unknown" if cpu.xcomp_supported is None else f"{cpu.xcomp_supported:#x}"
    text = f"{cpu.machine} {flags} xcomp={state} {decide(cpu).tag}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def source_version() -> str:
    """The sdist's version and the digest of our patches to its tree."""
    return f"{SDIST_VERSION}-p{patches_digest()}"


def build_key(backend: str, cpu: CpuAnswers) -> str:
    return f"{source_version()}-{backend}-{cpu.machine}-{cpu_signature(cpu)}"


def engine_root(dirs: Dirs) -> Path:
    return dirs.engines / "llama.cpp"


def built_binary(dirs: Dirs, key: str) -> Path:
    return engine_root(dirs) / key / "bin" / "llama-server"


def source_tree(dirs: Dirs) -> Path:
    """The llama.cpp tree of the pinned sdist with our patches, unpacked once into the cache
    and kept.

    Builds compile it; conversion, quantization tooling and the chat templates need its
    Python parts (``convert_hf_to_gguf.py``, ``gguf-py``, ``models/templates``) later."""
    root = engine_root(dirs)
    tree = root / f"source-{source_version()}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"source-{source_version()}.lock")):
        if (tree / "CMakeLists.txt").exists():
            return tree
        for stale in root.glob(".source-*"):  # left by a download that was killed
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".source-") as tmp:
            work = Path(tmp)
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "--quiet",
                    "--dest",
                    str(work),
                    SDIST_REQUIREMENT,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            archives = sorted(work.glob("*.tar.gz"))
            if done.returncode != 0 or not archives:
                last = (done.stderr.strip().splitlines() or ["no archive downloaded"])[-1]
                raise EngineBuildFailed(f"could not download {SDIST_REQUIREMENT}: {last}")
            with tarfile.open(archives[0]) as archive:
                members = [m for m in archive.getmembers() if "/vendor/llama.cpp/" in m.name]
                archive.extractall(work, members=members, filter="data")
            unpacked = next(work.glob("*/vendor/llama.cpp"))
            apply_patches(unpacked)
            os.replace(unpacked, tree)
    return tree


def run_logged(command: list[str], log: Path, progress: ProgressHook | None = None) -> None:
    """Run a build step, keep its whole output in ``log``, feed ``[ NN%]`` lines to progress.

    The step runs in its own process group, so that an interrupted install stops the
    compilers too instead of leaving them running."""
    with (
        log.open("a") as sink,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as proc,
    ):
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sink.write(line)
                match = PERCENT.match(line)
                if match and progress is not None:
                    progress(int(match.group(1)), 100)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise EngineBuildFailed(f"`{' '.join(command[:3])} …` failed; full log: {log}\n{tail}")


def compile_tree(
    source: Path,
    build: Path,
    *,
    backend: str,
    isa: IsaDecision,
    jobs: int,
    progress: ProgressHook,
    log: Path,
) -> None:
    if shutil.which("cmake") is None:
        raise EngineBuildFailed(
            "cmake is not installed: install it and a C++ compiler "
            "(Debian/Ubuntu: `apt-get install cmake build-essential`)"
        )
    flags = [*CMAKE_FLAGS, *(CUDA_FLAGS if backend == "cuda" else ())]
    if isa.compiler_flags:
        # GCC and Clang let an explicit -mno-X win over -march=native, whatever the order.
        extra = " ".join(isa.compiler_flags)
        flags += [f"-DCMAKE_C_FLAGS={extra}", f"-DCMAKE_CXX_FLAGS={extra}"]
    run_logged(["cmake", "-S", str(source), "-B", str(build), *flags], log)
    run_logged(
        ["cmake", "--build", str(build), "--config", "Release", "-j", str(jobs)]
        + ["--target", *TARGETS],
        log,
        progress,
    )


def build_proven(
    dirs: Dirs,
    key: str,
    backend: str,
    isa: IsaDecision,
    jobs: int | None,
    progress: ProgressHook,
    subject: SmokeSubject,
) -> None:
    """Compile, smoke-test and measure in a scratch folder; only a build that ran here is
    moved into the cache, so a crashing one is never found again."""
    root = engine_root(dirs)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".build-{key}-") as tmp:
        work = Path(tmp)
        log = root / f"{key}.build.log"
        log.write_text("")
        progress(0, 100)
        started = time.monotonic()
        cores = jobs or os.cpu_count() or 1
        compile_tree(
            source_tree(dirs),
            work / "build",
            backend=backend,
            isa=isa,
            jobs=cores,
            progress=progress,
            log=log,
        )
        build_s = time.monotonic() - started
        staged = work / "staged"
        (staged / "bin").mkdir(parents=True)
        for name in TARGETS:
            shutil.copy2(work / "build" / "bin" / name, staged / "bin" / name)
        started = time.monotonic()
        smoke_log = root / f"{key}.smoke.log"
        smoke_test(staged / "bin" / "llama-server", subject, smoke_log)
        smoke_s = time.monotonic() - started
        bench = run_bench(staged / "bin" / "llama-bench", subject, smoke_log)
        info = {
            "version": read_version(staged / "bin" / "llama-server"),
            "backend": backend,
            "source": SDIST_REQUIREMENT,
            "isa": {
                "tag": isa.tag,
                "enabled": list(isa.enabled),
                "disabled": list(isa.disabled),
                "reasons": list(isa.reasons),
            },
            "isa_conservative": isa.conservative,
            "build_seconds": round(build_s, 1),
            "smoke_test": {"model": subject.name, "seconds": round(smoke_s, 2)},
            "bench": bench.as_dict() if bench else None,
        }
        (staged / "info.json").write_text(json.dumps(info, indent=2))
        os.replace(staged, root / key)


def install(
    dirs: Dirs,
    backend: str,
    jobs: int | None,
    progress: ProgressHook,
    subject: Callable[[], SmokeSubject],
    *,
    cpu: CpuAnswers | None = None,
    rebuild: bool = False,
    say: Callable[[str], None] = print,
) -> InstalledEngine:
    """Build llama-server for this machine unless the cache already has a build that ran
    here. A build killed by SIGILL is rebuilt once with the conservative ISA set.
    ``subject`` is asked for only when something is built (it may have to pull a model)."""
    backend = choose_backend(backend)
    cpu = cpu or read_cpu_answers()
    key = build_key(backend, cpu)
    root = engine_root(dirs)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        if rebuild:
            shutil.rmtree(root / key, ignore_errors=True)
        if not built_binary(dirs, key).exists():
            for stale in root.glob(f".build-{key}-*"):  # left by a build that was killed
                shutil.rmtree(stale, ignore_errors=True)
            isa = decide(cpu)
            model = subject()
            for reason in isa.reasons:
                say(f"building without {reason}")
            try:
                build_proven(dirs, key, backend, isa, jobs, progress, model)
            except EngineSmokeFailed as crash:
                fallback = decide(cpu, conservative=True)
                if crash.returncode != -signal.SIGILL or fallback.disabled == isa.disabled:
                    raise
                say(
                    "the build was killed by SIGILL on this CPU; rebuilding once without "
                    + ", ".join(x for x in fallback.disabled if x not in isa.disabled)
                )
                build_proven(dirs, key, backend, fallback, jobs, progress, model)
    return built_engine(dirs, key)


def built_engine(dirs: Dirs, key: str) -> InstalledEngine:
    info = json.loads((engine_root(dirs) / key / "info.json").read_text())
    return InstalledEngine(built_binary(dirs, key), info["version"], "built", info)
