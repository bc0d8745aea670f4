"""The vLLM adapter turns the planner's vLLM plans into ``vllm serve`` command lines, an
environment without tokens, and vLLM's error bodies into the gateway's API errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdeploy.bench.launch import free_port
from dsdeploy.catalog import get
from dsdeploy.catalog.gpus import find_gpu
from dsdeploy.engines.vllm import VllmEngine, parsers_for
from dsdeploy.engines.vllm_errors import explain_vllm_failure, translate_vllm_error
from dsdeploy.engines.vllm_locate import NO_GPU, locate_vllm, require_vllm
from dsdeploy.errors import ConfigError
from dsdeploy.hardware import probe_gpus
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.planner.launch_vllm import plan_vllm_serving
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import Plan
from tests.conftest import run_cli
from tests.vllm_standin.cli import flags

GIB = 2**30
SOCKET = Path("/run/dsdeploy-x/engine.sock")
MODEL_DIR = Path("/models/dirs/m")
ENVIRON = {
    "PATH": "/usr/bin",
    "HF_TOKEN": "hf_secret",
    "HUGGING_FACE_HUB_TOKEN": "hf_secret",
    "DSDEPLOY_METRICS_TOKEN": "m",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "RAY_ADDRESS": "10.0.0.1:6379",
    "NCCL_SOCKET_IFNAME": "eth1",
}


def gpu_node(name: str, count: int) -> Machine:
    spec = find_gpu(name)
    return Machine(512 * GIB, 64, 200e9, spec.name, spec.memory, count, spec.bandwidth)


def engine_for(model: str, node: Machine, nodes: int = 1) -> tuple[VllmEngine, LaunchPlan, Plan]:
    launch, plan = plan_vllm_serving(get(model), node, nodes=nodes)
    engine = VllmEngine(("/opt/vllm/bin/vllm", "serve"), MODEL_DIR, model, launch)
    return engine, launch, plan


def test_single_gpu_7b_plan_becomes_one_gpu_bf16_serve_with_r1_reasoning() -> None:
    engine, launch, plan = engine_for("deepseek-r1-distill-qwen-7b", gpu_node("H100 SXM", 1))
    argv = engine.argv(SOCKET)
    assert argv[:3] == ["/opt/vllm/bin/vllm", "serve", str(MODEL_DIR)]
    given = flags(argv)
    layout = plan.vllm
    assert layout is not None and layout.weights.name == "BF16"
    assert given["--uds"] == str(SOCKET)
    assert given["--served-model-name"] == "deepseek-r1-distill-qwen-7b"
    assert given["--tensor-parallel-size"] == "1"
    assert given["--pipeline-parallel-size"] == "1"
    assert given["--max-model-len"] == str(layout.max_model_len) == str(launch.ctx_per_slot)
    assert given["--max-num-seqs"] == str(launch.parallel)
    assert launch.parallel == min(256, layout.kv_pool_tokens // layout.max_model_len)
    assert given["--kv-cache-dtype"] == "auto"
    assert given["--gpu-memory-utilization"] == "0.9"
    assert given["--reasoning-parser"] == "deepseek_r1"
    assert given["--max-log-len"] == "0"
    for absent in ("--tool-call-parser", "--enable-auto-tool-choice", "--trust-remote-code"):
        assert absent not in given
    assert "--distributed-executor-backend" not in given
    reasoning = engine.capabilities.reasoning
    assert reasoning is not None and reasoning.field == "reasoning"  # vLLM's name
    assert reasoning.thinking == "always"
    assert engine.capabilities.tool_parser is None


def test_671b_on_eight_h200_is_fp8_tensor_parallel_8() -> None:
    engine, launch, plan = engine_for("deepseek-r1", gpu_node("H200", 8))
    given = flags(engine.argv(SOCKET))
    assert plan.vllm is not None and plan.vllm.weights.name == "FP8"
    assert given["--tensor-parallel-size"] == "8"
    assert given["--pipeline-parallel-size"] == "1"
    assert given["--max-model-len"] == str(plan.vllm.max_model_len)
    arch = get("deepseek-r1").architecture
    assert arch is not None and int(given["--max-model-len"]) <= arch.max_positions
    assert given["--max-num-seqs"] == str(launch.parallel)
    assert given["--reasoning-parser"] == "deepseek_r1"
    assert "--tool-call-parser" not in given and "--trust-remote-code" not in given
    assert "--distributed-executor-backend" not in given
    assert any(c.what == "tensor parallel" and c.value == "8" for c in plan.choices)


def test_671b_on_two_nodes_of_eight_h100_is_tp8_by_pp2_through_ray() -> None:
    one_node = plan_vllm_serving(get("deepseek-v3"), gpu_node("H100 SXM", 8))[1]
    assert one_node.vllm is not None and one_node.vllm.weights.name == "AWQ-INT4"
    engine, launch, plan = engine_for("deepseek-v3", gpu_node("H100 SXM", 8), nodes=2)
    given = flags(engine.argv(SOCKET))
    assert plan.vllm is not None and plan.vllm.weights.name == "FP8"  # two nodes hold 8-bit
    assert (launch.tensor_parallel, launch.pipeline_parallel) == (8, 2)
    assert given["--tensor-parallel-size"] == "8"
    assert given["--pipeline-parallel-size"] == "2"
    assert given["--distributed-executor-backend"] == "ray"
    assert given["--max-model-len"] == str(plan.vllm.max_model_len)
    assert given["--tool-call-parser"] == "deepseek_v3"
    assert "--enable-auto-tool-choice" in given and "--reasoning-parser" not in given
    assert any(c.what == "tensor × pipeline parallel" and c.value == "8 × 2" for c in plan.choices)
    env = engine.launch(SOCKET, ENVIRON).env
    assert env["RAY_ADDRESS"] == "10.0.0.1:6379" and env["NCCL_SOCKET_IFNAME"] == "eth1"


def test_a_model_too_big_for_the_gpus_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="does not fit 1 node"):
        plan_vllm_serving(get("deepseek-r1"), gpu_node("RTX 4090", 1))


def test_a_context_larger_than_the_kv_pool_is_refused() -> None:
    with pytest.raises(ConfigError, match="--ctx-size"):
        plan_vllm_serving(
            get("deepseek-r1-distill-qwen-7b"), gpu_node("RTX 4090", 1), ctx_size=10**7
        )


def test_parsers_follow_each_deepseek_generation() -> None:
    assert parsers_for("deepseek-r1") == ("deepseek_r1", None)
    assert parsers_for("deepseek-r1-distill-llama-70b") == ("deepseek_r1", None)
    assert parsers_for("deepseek-r1-0528") == ("deepseek_r1", "deepseek_v3")
    assert parsers_for("deepseek-v3-0324") == (None, "deepseek_v3")
    assert parsers_for("deepseek-v3.1") == ("deepseek_v3", "deepseek_v31")
    assert parsers_for("deepseek-v3.1-terminus") == ("deepseek_v3", "deepseek_v31")
    assert parsers_for("deepseek-v3.2-exp") == ("deepseek_v3", "deepseek_v32")
    assert parsers_for("deepseek-v4-flash") == ("deepseek_v4", "deepseek_v4")
    assert parsers_for("deepseek-v2-lite") == (None, None)
    assert parsers_for("smollm2") == (None, None)


def test_the_api_server_module_takes_the_model_as_an_option() -> None:
    launch = LaunchPlan(threads=1, ctx_per_slot=4096, parallel=4, kv_type="auto")
    program = ("/usr/bin/python3", "-m", "vllm.entrypoints.openai.api_server", "--model")
    argv = VllmEngine(program, MODEL_DIR, "m", launch).argv(SOCKET)
    assert argv[:5] == [*program, str(MODEL_DIR)]


def test_environment_is_offline_private_and_has_no_token() -> None:
    engine, _, _ = engine_for("deepseek-r1-distill-qwen-7b", gpu_node("H100 SXM", 1))
    env = engine.launch(SOCKET, ENVIRON).env
    assert not {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "DSDEPLOY_METRICS_TOKEN"} & set(env)
    assert "RAY_ADDRESS" not in env  # one node: no cluster to join
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["HF_HOME"].startswith(str(SOCKET.parent))  # no cache dir given: the run's own
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["PATH"] == "/usr/bin"


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_vllm_error_envelope_passes_its_4xx_message() -> None:
    payload = body({"error": {"message": "temperature must be >= 0", "type": "BadRequestError",
                              "param": "temperature", "code": 400}})  # fmt: skip
    failure = translate_vllm_error(400, payload)
    assert failure is not None and failure.status == 400
    assert failure.message == "temperature must be >= 0" and failure.code is None


def test_vllm_legacy_error_object_is_read_too() -> None:
    payload = body({"object": "error", "message": "bad n", "type": "BadRequestError",
                    "param": None, "code": 400})  # fmt: skip
    failure = translate_vllm_error(400, payload)
    assert failure is not None and (failure.status, failure.message) == (400, "bad n")


def test_context_length_errors_become_context_length_exceeded() -> None:
    for message in (
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens",
        "The decoder prompt (length 9000) is longer than the maximum model length of 8192.",
    ):
        payload = body({"error": {"message": message, "type": "BadRequestError", "code": 400}})
        failure = translate_vllm_error(400, payload)
        assert failure is not None and failure.code == "context_length_exceeded"
        assert failure.status == 400


def test_fastapi_422_becomes_a_400_naming_the_field_without_echoing_input() -> None:
    detail = [{"type": "string_type", "loc": ["body", "messages", 0, "content"],
               "msg": "Input should be a valid string", "input": "SECRET PROMPT"}]  # fmt: skip
    failure = translate_vllm_error(422, body({"detail": detail}))
    assert failure is not None and failure.status == 400
    assert failure.message == "messages.0.content: Input should be a valid string"
    assert "SECRET" not in failure.message
    not_found = translate_vllm_error(404, body({"detail": "Not Found"}))
    assert not_found is not None and (not_found.status, not_found.message) == (404, "Not Found")


def test_server_errors_and_foreign_bodies_stay_generic() -> None:
    five = body({"error": {"message": "EngineCore died", "type": "InternalServerError"}})
    assert translate_vllm_error(500, five) is None
    assert translate_vllm_error(400, b"<html>oops</html>") is None
    assert translate_vllm_error(400, body(["not", "an", "error"])) is None


def test_start_failures_are_explained_from_vllms_log() -> None:
    assert "upgrade" in explain_vllm_failure(["vllm: error: unrecognized arguments: --uds /x"])
    assert "--uds" in explain_vllm_failure(["vllm: error: unrecognized arguments: --uds /x"])
    oom = ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"]
    assert "--ctx-size" in explain_vllm_failure(oom)
    assert "Ray" in explain_vllm_failure(["ModuleNotFoundError: No module named 'ray'"])
    assert explain_vllm_failure([]) == "its log is empty"


def test_vllm_is_refused_without_an_nvidia_gpu_before_looking_for_it() -> None:
    with pytest.raises(ConfigError) as refused:
        require_vllm(None, nvidia_gpus=0)
    assert str(refused.value) == NO_GPU
    assert "--engine llama.cpp" in NO_GPU


def test_vllm_is_found_by_setting_then_path_then_module(tmp_path: Path) -> None:
    program = tmp_path / "vllm"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert locate_vllm(program) == (str(program), "serve")
    with pytest.raises(ConfigError, match="not an executable"):
        locate_vllm(tmp_path / "missing")
    assert locate_vllm(None, lambda _: "/usr/bin/vllm") == ("/usr/bin/vllm", "serve")
    module = locate_vllm(None, lambda _: None, lambda _: True)
    assert module is not None and module[1:] == (
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
    )
    assert locate_vllm(None, lambda _: None, lambda _: False) is None


def test_serve_engine_vllm_without_an_nvidia_gpu_is_one_line_and_a_failure(
    isolated_home: Path,
) -> None:
    if probe_gpus()[0]:
        pytest.skip("this machine has an NVIDIA GPU")
    done = run_cli(isolated_home, "serve", "--engine", "vllm", "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"error: {NO_GPU}"
    assert "Traceback" not in done.stderr
    assert not list(isolated_home.rglob("manifests/*.json"))  # refused before any pull
