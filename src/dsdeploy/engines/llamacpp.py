"""llama.cpp's ``llama-server`` as an Engine: continuous batching, parallel slots, prefix cache."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dsdeploy.engines.base import (
    EngineCapabilities,
    EngineFailure,
    LaunchSpec,
    MemoryWeights,
    ReasoningOutput,
    allowlisted_environment,
    explain_from_log,
    inherited_path,
)
from dsdeploy.model.thinking import Thinking
from dsdeploy.planner.launch_plan import LaunchPlan

FAILURE_FIXES = (
    (
        ("out of memory", "failed to allocate", "cudamalloc failed", "unable to allocate"),
        "there is not enough memory for the model at this context: lower --ctx-size or --parallel",
    ),
    (
        ("unknown model architecture", "unknown architecture"),
        "this llama.cpp build does not know the model's architecture: a newer engine is needed",
    ),
    (
        ("failed to load model", "invalid magic", "gguf_init_from_file", "failed to read"),
        "llama.cpp could not read the model file: run `dsdeploy pull` again to re-verify it",
    ),
    (
        ("couldn't bind", "address already in use"),
        "the engine could not listen on its private socket: start again",
    ),
)


def explain_llama_failure(log_tail: list[str]) -> str:
    """What to do about a llama-server that did not start, from the end of its log."""
    return explain_from_log(FAILURE_FIXES, log_tail)


def translate_llama_error(status: int, payload: bytes) -> EngineFailure | None:
    """llama-server's 4xx speak about the request and are passed on; its 5xx are not."""
    try:
        error = json.loads(payload)["error"]
        message, kind = str(error["message"]), str(error.get("type", ""))
    except (ValueError, KeyError, TypeError):
        return None
    if kind == "exceed_context_size_error":
        return EngineFailure(
            400,
            f"this model's context is {error.get('n_ctx')} tokens per request, but the "
            f"request has {error.get('n_prompt_tokens')} prompt tokens: shorten it, or "
            "serve with a larger --ctx-size",
            code="context_length_exceeded",
        )
    if 400 <= status < 500 and message:
        return EngineFailure(status, message[:1000])
    return None


@dataclass(frozen=True)
class LlamaCppEngine:
    binary: Path
    model_path: Path
    alias: str
    options: LaunchPlan
    embedding_model: bool = False
    weights: MemoryWeights | None = None
    """Set for encrypted weights: the engine reads them from this memfd, not ``model_path``."""
    thinking: Thinking | None = None
    """Set for a reasoning model: llama-server's own parser then cuts out its thinking."""
    adapters: tuple[Path, ...] = ()
    """GGUF LoRA adapters over this model; request ``lora`` entries select them by index."""
    name: str = "llama.cpp"
    health_path: str = "/health"
    capabilities: EngineCapabilities = field(init=False)

    def __post_init__(self) -> None:
        generates = not self.embedding_model
        capabilities = EngineCapabilities(
            chat=generates,
            completions=generates,
            embeddings=not generates,
            responses=generates,
            messages=generates,
            tokenize=True,
            max_choices=self.options.parallel if generates else 1,
            metrics_path="/metrics",
            reasoning=(
                ReasoningOutput(self.thinking, field="reasoning_content")
                if self.thinking is not None and generates
                else None
            ),
        )
        object.__setattr__(self, "capabilities", capabilities)

    def launch(self, socket_path: Path, environ: Mapping[str, str]) -> LaunchSpec:
        fds = () if self.weights is None else (self.weights.fd,)
        return LaunchSpec(tuple(self.argv(socket_path)), allowlisted_environment(environ), fds)

    def model_argument(self) -> str:
        # llama.cpp opens and mmaps the memfd by this path as it would a file.
        return str(self.model_path) if self.weights is None else inherited_path(self.weights.fd)

    def argv(self, socket_path: Path) -> list[str]:
        launch = self.options
        argv = [
            str(self.binary),
            "--model",
            self.model_argument(),
            "--alias",
            self.alias,  # the engine then names the model as the gateway does
            "--host",
            str(socket_path),  # llama-server listens on a Unix socket for a path ending .sock
            "--threads",
            str(launch.threads),
            # Without a unified KV cache each slot owns ctx_size / parallel tokens.
            "--parallel",
            str(launch.parallel),
            "--no-kv-unified",
            "--ctx-size",
            str(launch.ctx_per_slot * launch.parallel),
            "--no-webui",
            "--metrics",  # slots busy and requests deferred, read when /metrics is scraped
            "--cache-ram",  # the prompt cache, counted in the planned memory
            str(launch.prompt_cache_mib),
            "--offline",
            "--log-colors",
            "off",
            # Info, pinned: at debug (5) llama-server logs each request body and prompt token,
            # and the engine log must never hold prompt text.
            "--log-verbosity",
            "3",
        ]
        if launch.kv_type != "f16":
            # A quantized V cache needs flash attention; llama.cpp refuses it otherwise.
            argv += ["--flash-attn", "on", "-ctk", launch.kv_type, "-ctv", launch.kv_type]
        if launch.gpu_layers is not None:
            # The plan placed the layers; llama.cpp's own --fit would place them again.
            argv += ["--n-gpu-layers", str(launch.gpu_layers), "--fit", "off"]
        if launch.cpu_moe_layers:
            argv += ["--n-cpu-moe", str(launch.cpu_moe_layers)]
        for adapter in self.adapters:
            argv += ["--lora", str(adapter)]
        if self.adapters:
            # Loaded, all at scale 0: each request names the one it wants (the gateway sets
            # ``lora`` on every request to this engine, the base model's too).
            argv.append("--lora-init-without-apply")
        if self.embedding_model:
            argv.append("--embeddings")
        elif self.thinking is not None:
            # The engine's own parser knows the template's think markers; pinned, not left to
            # the build's default, so the gateway knows the field it writes.
            argv += ["--reasoning-format", "deepseek"]
        return argv

    def explain_failure(self, log_tail: list[str]) -> str:
        return explain_llama_failure(log_tail)

    def translate_error(self, status: int, payload: bytes) -> EngineFailure | None:
        return translate_llama_error(status, payload)
