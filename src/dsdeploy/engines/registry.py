"""Engines by name. Serve, bench and eval build an engine here and know only ``Engine``;
adding an engine is one new adapter and one line in ``BUILDERS``. No engine is built for a
model whose files have not passed the structure checks (``model.file_checks``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.engines.base import Engine, MemoryWeights
from dsdeploy.engines.llamacpp import LlamaCppEngine
from dsdeploy.engines.transformers import TransformersEngine
from dsdeploy.engines.transformers_support import check_checkpoint
from dsdeploy.engines.vllm import VllmEngine
from dsdeploy.errors import ConfigError
from dsdeploy.model.file_checks import ModelChecks
from dsdeploy.model.thinking import Thinking
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.planner.launch_transformers import TransformersLaunch


@dataclass(frozen=True)
class ModelLaunch:
    """Everything an adapter needs to serve one model: its binary, the model's entry file
    (inside the model's folder), the name clients use, and the planner's launch plan."""

    binary: Path
    model_path: Path
    alias: str
    plan: LaunchPlan
    embedding_model: bool = False
    weights: MemoryWeights | None = None
    """Decrypted weights in memory, which the engine reads instead of ``model_path``."""
    program: tuple[str, ...] = ()
    """The engine's command up to the model when it is more than ``binary`` (vLLM:
    ``vllm serve``, or ``python -m …api_server --model``)."""
    cache_dir: Path | None = None
    """Where an engine keeps caches across starts (vLLM's compile cache)."""
    thinking: Thinking | None = None
    """How a reasoning model's chat template starts its thinking; None for other models."""
    transformers: TransformersLaunch | None = None
    """The transformers engine's device, dtype, KV cache and batch size."""
    adapters: tuple[Path, ...] = ()
    """GGUF LoRA adapters loaded over the model, each off until a request selects it."""


def llamacpp(launch: ModelLaunch) -> Engine:
    return LlamaCppEngine(
        launch.binary,
        launch.model_path,
        launch.alias,
        launch.plan,
        launch.embedding_model,
        launch.weights,
        launch.thinking,
        adapters=launch.adapters,
    )


def vllm(launch: ModelLaunch) -> Engine:
    program = launch.program or (str(launch.binary), "serve")
    return VllmEngine(
        program, launch.model_path, launch.alias, launch.plan, launch.cache_dir, launch.thinking
    )


def transformers(launch: ModelLaunch) -> Engine:
    if launch.transformers is None:
        raise ConfigError(
            "the transformers engine needs its launch plan (plan_transformers_serving)"
        )
    servable = check_checkpoint(launch.model_path, launch.alias)
    return TransformersEngine(
        launch.model_path, launch.alias, launch.transformers, servable.batching, launch.thinking
    )


BUILDERS: dict[str, Callable[[ModelLaunch], Engine]] = {
    "llama.cpp": llamacpp,
    "vllm": vllm,
    "transformers": transformers,
}


def build_engine(name: str, launch: ModelLaunch, checks: ModelChecks) -> Engine:
    """The engine for ``launch``, once its model files pass ``checks`` (``ModelFileRejected``
    otherwise): engine parsers have had memory-safety bugs on malformed files."""
    builder = BUILDERS.get(name)
    if builder is None:
        raise ConfigError(f"unknown engine {name!r}; engines: {', '.join(sorted(BUILDERS))}")
    if launch.weights is None:
        checks.require(launch.model_path)
    for adapter in launch.adapters:
        checks.require(adapter)
    # Encrypted weights were checked in the clear before they were encrypted, and their
    # decryption is verified against that plaintext's sha256: the engine reads those bytes.
    return builder(launch)
