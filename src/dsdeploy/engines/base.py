"""The one interface every engine meets; the runtime and gateway know nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dsdeploy.model.thinking import Thinking

ENV_ALLOWLIST = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "NVIDIA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
)
"""What an engine may inherit from dsdeploy's environment: where programs and libraries are,
locale, and which devices it may use. Tokens (HF_TOKEN), keys and everything else stay out."""


def allowlisted_environment(
    environ: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment an engine starts with: the allowlisted variables, then its own."""
    kept = {name: environ[name] for name in ENV_ALLOWLIST if name in environ}
    return kept | dict(extra or {})


def explain_from_log(fixes: tuple[tuple[tuple[str, ...], str], ...], log_tail: list[str]) -> str:
    """The fix of the first known failure whose signature the log's end shows (lowercase)."""
    text = "\n".join(log_tail).lower()
    for signatures, fix in fixes:
        if any(signature in text for signature in signatures):
            return fix
    return "the engine's last log lines are below" if log_tail else "its log is empty"


@dataclass(frozen=True)
class ReasoningOutput:
    """How a reasoning model's thinking leaves its engine."""

    thinking: Thinking = "always"
    """How the model's chat template starts its thinking."""
    field: str | None = None
    """The message field the engine's own parser writes the thinking into
    (llama-server: ``reasoning_content``; vLLM: ``reasoning``); None when the engine leaves
    ``<think>…</think>`` in the content and the gateway cuts it out."""


@dataclass(frozen=True)
class EngineCapabilities:
    """What the gateway may route to an engine for a given model."""

    chat: bool = True
    completions: bool = True
    embeddings: bool = False
    responses: bool = False
    """OpenAI Responses API (``/v1/responses``)."""
    messages: bool = False
    """Anthropic Messages API (``/v1/messages``, ``/v1/messages/count_tokens``)."""
    tokenize: bool = False
    """``/tokenize`` and ``/detokenize``."""
    max_choices: int = 1
    """Largest ``n`` (choices per request) the engine answers."""
    metrics_path: str | None = None
    """Where the engine serves its own Prometheus metrics, read when /metrics is scraped."""
    reasoning: ReasoningOutput | None = None
    """Set for a reasoning model: where its thinking comes out (see ``gateway.reasoning``)."""
    tool_parser: str | None = None


@dataclass(frozen=True)
class LaunchSpec:
    """How to start an engine: its command line, its whole environment, and the file
    descriptors it inherits (e.g. decrypted weights in a memfd)."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    pass_fds: tuple[int, ...] = ()


class MemoryWeights(Protocol):
    """Weights that exist only in memory (decrypted from encrypted files), which the engine
    reads through an inherited descriptor: loaded before its first start, kept across its
    restarts, released when it stops for good."""

    @property
    def fd(self) -> int: ...

    def load(self) -> None: ...

    def release(self) -> None: ...


def inherited_path(fd: int) -> str:
    """How a child names a descriptor it inherited (``pass_fds`` keeps the number)."""
    return f"/proc/self/fd/{fd}"


@dataclass(frozen=True)
class EngineFailure:
    """An engine's own error answer, put in API terms by the engine's adapter."""

    status: int
    message: str
    code: str | None = None


class Engine(Protocol):
    """An inference server run as a child process, listening on a Unix socket in a folder
    only this user can open: other local users cannot reach it around the gateway."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> EngineCapabilities: ...

    @property
    def health_path(self) -> str:
        """GET path that answers 200 once the model is loaded and requests can be served."""
        ...

    def launch(self, socket_path: Path, environ: Mapping[str, str]) -> LaunchSpec:
        """How to serve the model on the Unix socket ``socket_path``; ``environ`` is
        dsdeploy's own environment, of which only the allowlist may pass."""
        ...

    def explain_failure(self, log_tail: list[str]) -> str:
        """What to do about a start that failed, judged from the end of the engine's log."""
        ...

    def translate_error(self, status: int, payload: bytes) -> EngineFailure | None:
        """The engine's non-200 answer in API terms, or None for a failure the client
        should only see as a generic 502 (its text goes to the operator's log)."""
        ...
