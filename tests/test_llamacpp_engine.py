"""How dsdeploy starts llama-server, and how it finds or builds one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from dsdeploy.engines import llamacpp_install, llamacpp_locate
from dsdeploy.engines.base import ReasoningOutput
from dsdeploy.engines.llamacpp import LlamaCppEngine
from dsdeploy.errors import EngineBuildFailed, EngineNotInstalled
from dsdeploy.planner.launch import plan_serving
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.planner.placement import Machine
from dsdeploy.settings import Settings
from tests.conftest import run_cli

MACHINE = Machine(ram_available=2**34, physical_cores=8, cpu_bandwidth=20e9)


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_engine_listens_on_the_given_socket_with_the_store_name() -> None:
    engine = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "smollm2", LaunchPlan(4, 2048, 4))
    argv = engine.argv(Path("/run/x/engine.sock"))
    assert flag(argv, "--host") == "/run/x/engine.sock"
    assert "--port" not in argv
    assert flag(argv, "--alias") == "smollm2"
    assert "--offline" in argv


def test_engine_logs_at_info_so_prompts_never_reach_its_log() -> None:
    engine = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "smollm2", LaunchPlan(4, 2048, 4))
    argv = engine.argv(Path("e.sock"))
    assert flag(argv, "--log-verbosity") == "3"
    assert not {"-v", "--verbose", "--log-verbose"} & set(argv)


def test_context_is_per_slot_times_slots() -> None:
    engine = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "m", LaunchPlan(2, 1024, 3))
    argv = engine.argv(Path("e.sock"))
    assert (flag(argv, "--ctx-size"), flag(argv, "--parallel")) == ("3072", "3")
    assert "--no-kv-unified" in argv


def serving_launch(**flags: int | None) -> LaunchPlan:
    given = {"threads": None, "ctx_size": None, "parallel": None} | flags
    launch, _ = plan_serving("smollm2", Path("/b"), "m.Q4_1.gguf", 96_000_000, MACHINE, **given)
    return launch


def test_launch_uses_physical_cores_four_slots_and_4096_tokens_each() -> None:
    launch = serving_launch(threads=None, ctx_size=None, parallel=None)
    assert launch == LaunchPlan(threads=8, ctx_per_slot=4096, parallel=4)


def test_launch_caps_context_at_the_models() -> None:
    launch = serving_launch(threads=None, ctx_size=100_000, parallel=None)
    assert launch.ctx_per_slot == 8192


def test_launch_flags_win_over_the_plan() -> None:
    launch = serving_launch(threads=3, ctx_size=512, parallel=2)
    assert launch == LaunchPlan(threads=3, ctx_per_slot=512, parallel=2)


def test_gpu_plan_places_layers_and_experts_itself() -> None:
    launch = LaunchPlan(8, 4096, 1, gpu_layers=61, cpu_moe_layers=55)
    argv = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "m", launch).argv(Path("e.sock"))
    assert (flag(argv, "--n-gpu-layers"), flag(argv, "--n-cpu-moe")) == ("61", "55")
    assert flag(argv, "--fit") == "off"


def test_cpu_plan_leaves_gpu_flags_out() -> None:
    argv = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "m", serving_launch()).argv(
        Path("e.sock")
    )
    assert "--n-gpu-layers" not in argv and "--n-cpu-moe" not in argv


def test_quantized_kv_cache_turns_flash_attention_on() -> None:
    engine = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "m", LaunchPlan(1, 512, 1, "q8_0"))
    argv = engine.argv(Path("e.sock"))
    assert (flag(argv, "--flash-attn"), flag(argv, "-ctk"), flag(argv, "-ctv")) == (
        "on",
        "q8_0",
        "q8_0",
    )


def test_embedding_models_serve_only_embeddings() -> None:
    engine = LlamaCppEngine(
        Path("/bin/ls"), Path("/m.gguf"), "e", LaunchPlan(1, 512, 1), embedding_model=True
    )
    assert engine.capabilities.embeddings
    assert not engine.capabilities.chat
    assert "--embeddings" in engine.argv(Path("e.sock"))


def test_cuda_is_chosen_only_with_a_gpu() -> None:
    expected = "cuda" if llamacpp_install.nvidia_gpu_present() else "cpu"
    if llamacpp_install.find_nvcc() is None:
        expected = "cpu"
    assert llamacpp_install.choose_backend("auto") == expected
    assert llamacpp_install.choose_backend("cpu") == "cpu"


def test_installing_an_unknown_engine_is_one_line_and_exit_1(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "engine", "install", "sglang")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: unknown engine 'sglang'; installable engines: llama.cpp"


def test_configured_binary_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineNotInstalled, match="does not exist"):
        llamacpp_locate.locate(Settings().dirs, tmp_path / "nope", "cpu")


@pytest.mark.engine
def test_built_engine_reports_its_version(engine_installed: None) -> None:
    found = llamacpp_locate.locate(Settings().dirs, None, "auto")
    assert found is not None
    assert "commit" in found.version


@pytest.mark.engine
def test_llama_server_on_path_is_preferred_and_listed(
    engine_installed: None, tmp_path: Path, isolated_home: Path
) -> None:
    built = next(llamacpp_locate.built_engines(Settings().dirs))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "llama-server").symlink_to(built.binary)
    path = f"{bindir}{os.pathsep}{os.environ['PATH']}"
    done = run_cli(isolated_home, "engine", "list", PATH=path)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "PATH" in line]
    assert rows and "yes" in rows[0]


def test_interrupted_build_step_leaves_no_compiler_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; echo '[ 10%] Building'; wait"

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        llamacpp_install.run_logged(["sh", "-c", script], tmp_path / "build.log", interrupt)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and psutil.pid_exists(child):
        if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_failed_build_step_names_its_log_and_shows_the_end(tmp_path: Path) -> None:
    with pytest.raises(EngineBuildFailed, match="error: no compiler"):
        llamacpp_install.run_logged(
            ["sh", "-c", "echo 'error: no compiler'; exit 3"], tmp_path / "build.log"
        )


@pytest.mark.parametrize(
    ("log_line", "advice"),
    [
        ("ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer", "--ctx-size"),
        ("llama_model_load: error loading model: unknown model architecture: 'x'", "newer"),
        ("gguf_init_from_file_impl: invalid magic characters: 'abcd'", "dsdeploy pull"),
        ("something else entirely", "log lines are below"),
    ],
)
def test_start_failures_are_explained_from_the_engine_log(log_line: str, advice: str) -> None:
    engine = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "m", LaunchPlan(1, 512, 1))
    assert advice in engine.explain_failure(["loading", log_line])


def test_a_reasoning_model_is_parsed_by_the_engine_into_reasoning_content() -> None:
    engine = LlamaCppEngine(
        Path("/bin/ls"), Path("/m.gguf"), "r1", LaunchPlan(1, 512, 1), thinking="always"
    )
    assert flag(engine.argv(Path("e.sock")), "--reasoning-format") == "deepseek"
    assert engine.capabilities.reasoning == ReasoningOutput("always", "reasoning_content")


def test_other_models_are_not_told_about_reasoning() -> None:
    engine = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "m", LaunchPlan(1, 512, 1))
    assert "--reasoning-format" not in engine.argv(Path("e.sock"))
    assert engine.capabilities.reasoning is None
