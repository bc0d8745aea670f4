"""vLLM's OpenAI server (``vllm serve``) as an Engine: paged attention and continuous
batching on NVIDIA GPUs, tensor parallel within a node, pipeline parallel across nodes.

It listens on the supervisor's Unix socket with ``--uds`` (vLLM's ``FrontendArgs.uds``:
"If set, host and port arguments are ignored"), so, as with llama-server, nothing on the
machine reaches it around the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dsdeploy.engines.base import EngineCapabilities, EngineFailure, LaunchSpec, ReasoningOutput
from dsdeploy.engines.vllm_env import vllm_environment
from dsdeploy.engines.vllm_errors import explain_vllm_failure, translate_vllm_error
from dsdeploy.errors import ConfigError
from dsdeploy.model.thinking import Thinking, name_thinking
from dsdeploy.planner.launch_plan import LaunchPlan

PARSERS = (
    # (model name prefix, --reasoning-parser, --tool-call-parser); the longest prefix wins.
    # Names from vLLM's registries (vllm/reasoning/__init__.py, vllm/tool_parsers/__init__.py)
    # and docs/features/tool_calling.md, which pairs R1-0528 with the deepseek_v3 tool parser.
    ("deepseek-r1", "deepseek_r1", None),
    ("deepseek-r1-0528", "deepseek_r1", "deepseek_v3"),
    ("deepseek-v3", None, "deepseek_v3"),
    # V3.1 onwards think only when asked (chat_template_kwargs thinking=true): vLLM's
    # deepseek_v3 reasoning parser splits the thought then and passes text through otherwise.
    ("deepseek-v3.1", "deepseek_v3", "deepseek_v31"),
    ("deepseek-v3.2", "deepseek_v3", "deepseek_v32"),
    ("deepseek-v4", "deepseek_v4", "deepseek_v4"),
)
"""DeepSeek families whose output vLLM parses: R1's ``<think>`` and the tool-call markup of
each chat template generation. Other models (V2, Coder-V2, non-DeepSeek) get neither."""

KV_DTYPES = {"auto": "auto", "f16": "auto", "fp8": "fp8"}
"""Plan KV type → ``--kv-cache-dtype``; ``auto`` is the model's own dtype (bf16)."""


def parsers_for(model: str) -> tuple[str | None, str | None]:
    """The reasoning and tool-call parsers for a model, from its catalog name."""
    name = model.lower()
    matches = [p for p in PARSERS if name == p[0] or name.startswith(p[0] + "-")]
    if not matches:
        return None, None
    _, reasoning, tool = max(matches, key=lambda p: len(p[0]))
    return reasoning, tool


@dataclass(frozen=True)
class VllmEngine:
    program: tuple[str, ...]
    """How vLLM is started, up to the model folder: ``(vllm, "serve")`` or
    ``(python, "-m", "vllm.entrypoints.openai.api_server", "--model")``."""
    model_dir: Path
    alias: str
    options: LaunchPlan
    cache_dir: Path | None = None
    """Where vLLM keeps its compile and Hugging Face caches across starts; None: a folder
    beside the socket, private to the run and gone when it stops."""
    thinking: Thinking | None = None
    """How the model's chat template starts its thinking (None: judged by its name)."""
    name: str = "vllm"
    health_path: str = "/health"
    capabilities: EngineCapabilities = field(init=False)

    def __post_init__(self) -> None:
        reasoning, tool = parsers_for(self.alias)
        thinking = self.thinking or name_thinking(self.alias) or "always"
        capabilities = EngineCapabilities(
            max_choices=self.options.parallel,
            metrics_path="/metrics",
            # vLLM's parser writes the thinking into ``reasoning``; the gateway renames it.
            reasoning=ReasoningOutput(thinking, field="reasoning") if reasoning else None,
            tool_parser=tool,
        )
        object.__setattr__(self, "capabilities", capabilities)

    def launch(self, socket_path: Path, environ: Mapping[str, str]) -> LaunchSpec:
        cache = self.cache_dir or socket_path.parent / "cache"
        multi_node = self.options.pipeline_parallel > 1
        env = vllm_environment(environ, cache, multi_node=multi_node)
        return LaunchSpec(tuple(self.argv(socket_path)), env)

    def argv(self, socket_path: Path) -> list[str]:
        plan = self.options
        kv = KV_DTYPES.get(plan.kv_type)
        if kv is None:
            raise ConfigError(f"vLLM has no KV cache type {plan.kv_type!r}; use auto or fp8")
        argv = [
            *self.program,
            str(self.model_dir),
            "--uds",
            str(socket_path),  # host and port are then ignored
            "--served-model-name",
            self.alias,  # the engine then names the model as the gateway does
            "--tensor-parallel-size",
            str(plan.tensor_parallel),
            "--pipeline-parallel-size",
            str(plan.pipeline_parallel),
            "--max-model-len",
            str(plan.ctx_per_slot),
            "--max-num-seqs",
            str(plan.parallel),
            "--kv-cache-dtype",
            kv,
            # Request logging prints prompts (on by default in older vLLM releases): at
            # most zero characters of them, whatever the version's default.
            "--max-log-len",
            "0",
            "--disable-uvicorn-access-log",
        ]
        if plan.gpu_memory_utilization is not None:
            argv += ["--gpu-memory-utilization", f"{plan.gpu_memory_utilization:g}"]
        if plan.pipeline_parallel > 1:
            argv += ["--distributed-executor-backend", "ray"]  # stages on other nodes
        reasoning, tool = parsers_for(self.alias)
        if reasoning:
            argv += ["--reasoning-parser", reasoning]
        if tool:
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", tool]
        # Never --trust-remote-code: dsdeploy runs no code that comes with a model.
        return argv

    def explain_failure(self, log_tail: list[str]) -> str:
        return explain_vllm_failure(log_tail)

    def translate_error(self, status: int, payload: bytes) -> EngineFailure | None:
        return translate_vllm_error(status, payload)
