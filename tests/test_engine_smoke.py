"""An engine is used only after it ran here: a build or a found binary that dies is refused
with the reason, a SIGILL build is rebuilt once with fewer extensions, and an engine that
a signal kills while serving is explained."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from dsdeploy.engines import llamacpp_install, llamacpp_locate
from dsdeploy.engines.llamacpp_install import InstalledEngine
from dsdeploy.engines.llamacpp_smoke import SmokeSubject
from dsdeploy.errors import EngineSmokeFailed
from dsdeploy.paths import Dirs
from dsdeploy.settings import Settings
from dsdeploy.store import Store
from tests.conftest import Server, engine_of, free_port, run_cli
from tests.test_engine_isa import SPR_METAL, ZEN3

pytestmark = pytest.mark.engine

VERSION_LINE = "version: 0.5.0-dev (build 1, commit 0000000)"


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def dies_of_sigill(path: Path) -> Path:
    """Answers --version like llama-server, then dies as an AMX build does on its first matmul."""
    return executable(
        path,
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{VERSION_LINE}"; exit 0; fi\n'
        'echo "load_tensors: loading model"\nkill -ILL $$\n',
    )


def real_engine(model_home: Path) -> InstalledEngine:
    found = llamacpp_locate.locate(Settings(home=model_home).dirs, None, "cpu")
    assert found is not None and found.origin == "built"
    return found


def default_model(model_home: Path) -> Path:
    store = Store(Settings(home=model_home).dirs.models)
    manifest = store.manifest("smollm2")
    assert manifest is not None
    return store.weights_path(manifest)


def fake_cmake(bindir: Path, real_bin: Path) -> None:
    """A cmake whose build 'produces' binaries that die of SIGILL unless configured without
    AVX-512, and otherwise run the real engine: the install flow around it is real."""
    crash = 'echo "ggml_amx_init: AMX initialized"; kill -ILL $$'
    script = f"""#!{sys.executable}
import pathlib, sys
args = sys.argv[1:]
if args[0] == "-S":
    build = pathlib.Path(args[3])
    build.mkdir(parents=True, exist_ok=True)
    (build / "configured").write_text("\\n".join(args))
    sys.exit(0)
build = pathlib.Path(args[1])
safe = "-mno-avx512f" in (build / "configured").read_text()
(build / "bin").mkdir(exist_ok=True)
for name in {list(llamacpp_install.TARGETS)!r}:
    body = 'exec "{real_bin}/' + name + '" "$@"' if safe else {crash!r}
    tool = build / "bin" / name
    tool.write_text(
        "#!/bin/sh\\n"
        'if [ "$1" = "--version" ]; then echo "{VERSION_LINE}"; exit 0; fi\\n' + body + "\\n"
    )
    tool.chmod(0o755)
print("[100%] Built target llama-server")
"""
    executable(bindir / "cmake", script)


def scratch_dirs(tmp_path: Path) -> Dirs:
    """Its own cache, with a source tree that needs no download (the fake cmake ignores it)."""
    dirs = Dirs(data=tmp_path / "data", cache=tmp_path / "cache", config=tmp_path / "config")
    tree = dirs.engines / "llama.cpp" / f"source-{llamacpp_install.source_version()}"
    tree.mkdir(parents=True)
    (tree / "CMakeLists.txt").write_text("")
    return dirs


def test_build_killed_by_sigill_is_rebuilt_once_without_avx512_and_amx(
    model_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cmake(tmp_path / "bin", real_engine(model_home).binary.parent)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    dirs, said = scratch_dirs(tmp_path), []
    subject = SmokeSubject("smollm2", default_model(model_home), 2, dict(os.environ))
    installed = llamacpp_install.install(
        dirs, "cpu", 2, lambda d, t: None, lambda: subject, cpu=SPR_METAL, say=said.append
    )
    assert any("killed by SIGILL" in line and "avx512, amx" in line for line in said)
    assert installed.info["isa"]["tag"] == "native-no-avx512-amx"
    assert installed.info["isa_conservative"] is True
    assert installed.info["bench"]["tg_tokens_per_s"] > 0
    assert installed == llamacpp_locate.locate(dirs, None, "cpu", SPR_METAL)


def test_build_killed_by_sigill_with_nothing_left_to_drop_is_refused_and_not_cached(
    model_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cmake(tmp_path / "bin", real_engine(model_home).binary.parent)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    dirs = scratch_dirs(tmp_path)
    subject = SmokeSubject("smollm2", default_model(model_home), 2, dict(os.environ))
    with pytest.raises(EngineSmokeFailed) as refused:
        llamacpp_install.install(dirs, "cpu", 2, lambda d, t: None, lambda: subject, cpu=ZEN3)
    assert refused.value.returncode == -signal.SIGILL
    assert "CPU instruction this machine does not allow" in str(refused.value)
    assert "AMX initialized" in refused.value.log_tail[-1]
    assert llamacpp_locate.locate(dirs, None, "cpu", ZEN3) is None
    assert not list((dirs.engines / "llama.cpp").glob(".build-*"))


def test_found_binary_that_dies_of_sigill_is_refused_before_serving(
    model_home: Path, tmp_path: Path
) -> None:
    fake = dies_of_sigill(tmp_path / "llama-server")
    port = str(free_port())
    done = run_cli(model_home, "serve", "--port", port, DSDEPLOY_LLAMA_SERVER=str(fake))
    assert done.returncode == 1
    assert "failed its smoke test on" in done.stderr
    assert "killed by SIGILL" in done.stderr
    assert "dsdeploy engine install --rebuild" in done.stderr
    log_header = "last lines of the engine log:"
    assert log_header in done.stderr
    assert "load_tensors: loading model" in done.stderr.split(log_header)[1]
    assert "Traceback" not in done.stderr


def test_found_binary_is_checked_once_and_then_trusted(
    model_home: Path, tmp_path: Path, isolated_home: Path
) -> None:
    built = real_engine(model_home)
    (tmp_path / "bin").mkdir()
    shutil.copy(built.binary, tmp_path / "bin" / "llama-server")  # a file never checked here
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    found = InstalledEngine(tmp_path / "bin" / "llama-server", built.version, "PATH")
    dirs = Settings().dirs
    before = run_cli(isolated_home, "engine", "list", PATH=path)
    assert "not checked yet" in before.stdout
    llamacpp_locate.prove(
        dirs, found, SmokeSubject("smollm2", default_model(model_home), 2, dict(os.environ))
    )
    assert llamacpp_locate.proven_here(dirs, found)
    after = run_cli(isolated_home, "engine", "list", PATH=path)
    assert "not checked yet" not in after.stdout


def test_engine_list_shows_the_builds_speed_beside_the_decode_ceiling(model_home: Path) -> None:
    done = run_cli(model_home, "engine", "list")
    assert done.returncode == 0, done.stderr
    assert "decode ceiling for smollm2 here" in done.stdout
    assert "tg128" in done.stdout


def test_engine_killed_by_sigill_while_serving_is_explained(own_server: Server) -> None:
    engine_of(own_server).send_signal(signal.SIGILL)
    deadline, reasons = time.monotonic() + 10, []
    while time.monotonic() < deadline and not any("SIGILL" in r for r in reasons):
        answer = httpx.get(own_server.base_url + "/health")
        if answer.status_code == 503:
            reasons.append(answer.json()["reason"])
        time.sleep(0.01)
    assert any("CPU instruction this machine does not allow" in r for r in reasons), reasons
    deadline = time.monotonic() + 10
    while "engine stopped: it was killed by SIGILL" not in own_server.log.read_text():
        assert time.monotonic() < deadline, own_server.log.read_text()[-2000:]
        time.sleep(0.05)
