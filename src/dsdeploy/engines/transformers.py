"""transformers as an Engine: any safetensors architecture transformers knows, on the CPU
or one GPU, the reference path beside llama.cpp (GGUF) and vLLM (GPU serving at scale).

The engine process is dsdeploy's own small server around transformers
(``python -m dsdeploy.engines.transformers_server``) on the supervisor's Unix socket, run
by the same Python and the same dsdeploy as the gateway. It has no reasoning parser: the
gateway cuts ``<think>…</think>`` out of its answers, as for any engine without one.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dsdeploy
from dsdeploy.engines.base import (
    EngineCapabilities,
    EngineFailure,
    LaunchSpec,
    ReasoningOutput,
    allowlisted_environment,
    explain_from_log,
)
from dsdeploy.engines.transformers_support import Batching
from dsdeploy.engines.vllm_errors import translate_vllm_error
from dsdeploy.model.thinking import Thinking
from dsdeploy.planner.launch_transformers import TransformersLaunch

SERVER_MODULE = "dsdeploy.engines.transformers_server"

FAILURE_FIXES = (
    (
        ("no module named 'torch'", "no module named 'transformers'"),
        "the transformers engine needs torch and transformers: pip install torch transformers",
    ),
    (
        ("out of memory", "cannot allocate memory", "defaultcpuallocator: can't allocate"),
        "the weights and KV cache do not fit: lower --ctx-size or --parallel",
    ),
    (
        ("size mismatch", "you set `ignore_mismatched_sizes`", "error(s) in loading state_dict"),
        "the checkpoint's weights do not match its config.json: pull it again",
    ),
    (
        ("torch not compiled with cuda", "no cuda gpus are available", "cuda driver"),
        "torch cannot use the GPU: install a CUDA build of torch or check the driver "
        "(`dsdeploy doctor`)",
    ),
    (
        ("has no chat template",),
        "the checkpoint has no chat template: add one to its tokenizer_config.json",
    ),
)


def engine_environment(environ: Mapping[str, str], private: Path) -> dict[str, str]:
    """Offline, caches in the engine's own folder, and the dsdeploy that started it."""
    source = Path(dsdeploy.__file__).resolve().parent.parent
    return allowlisted_environment(
        environ,
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(private / "huggingface"),
            "PYTHONPATH": str(source),
        },
    )


@dataclass(frozen=True)
class TransformersEngine:
    model_dir: Path
    alias: str
    launch_plan: TransformersLaunch
    batching: Batching
    thinking: Thinking | None = None
    python: str = sys.executable
    name: str = "transformers"
    health_path: str = "/health"
    capabilities: EngineCapabilities = field(init=False)

    def __post_init__(self) -> None:
        capabilities = EngineCapabilities(
            completions=False,
            max_choices=1,
            metrics_path="/metrics",
            reasoning=ReasoningOutput(self.thinking) if self.thinking is not None else None,
        )
        object.__setattr__(self, "capabilities", capabilities)

    def launch(self, socket_path: Path, environ: Mapping[str, str]) -> LaunchSpec:
        env = engine_environment(environ, socket_path.parent)
        return LaunchSpec(tuple(self.argv(socket_path)), env)

    def argv(self, socket_path: Path) -> list[str]:
        launch = self.launch_plan
        plan = launch.plan
        return [
            self.python,
            "-m",
            SERVER_MODULE,
            "--model",
            str(self.model_dir),
            "--alias",
            self.alias,
            "--uds",
            str(socket_path),
            "--device",
            launch.device,
            "--dtype",
            launch.dtype,
            "--threads",
            str(plan.threads),
            "--batching",
            self.batching,
            "--max-model-len",
            str(plan.ctx_per_slot),
            "--max-seqs",
            str(plan.parallel),
            "--kv-tokens",
            str(launch.kv_tokens),
            "--max-batch-tokens",
            str(launch.max_batch_tokens),
        ]

    def explain_failure(self, log_tail: list[str]) -> str:
        return explain_from_log(FAILURE_FIXES, log_tail)

    def translate_error(self, status: int, payload: bytes) -> EngineFailure | None:
        # The engine answers OpenAI's error envelope, which vLLM's reader already reads.
        return translate_vllm_error(status, payload)
