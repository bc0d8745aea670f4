"""vLLM's error answers and start failures in dsdeploy's terms.

vLLM answers errors in two shapes of its own, plus FastAPI's:
- ``{"error": {"message", "type", "param", "code"}}`` (current; ``code`` is the HTTP status),
- ``{"object": "error", "message", "type", "param", "code"}`` (before the OpenAI envelope),
- ``{"detail": ...}`` from FastAPI itself (a 422 for a body its models reject, where vLLM's
  own handler does not answer, or an ``HTTPException`` such as a 404).

A request too long for the model has no error type of its own (it is a ``BadRequestError``);
only its message says so, in the phrases below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dsdeploy.engines.base import EngineFailure, explain_from_log

CONTEXT_PHRASES = ("maximum context length", "maximum model length")
""""This model's maximum context length is N tokens…" (prompt plus max_tokens too long);
"The decoder prompt (length N) is longer than the maximum model length of M" (prompt)."""


@dataclass(frozen=True)
class VllmError:
    message: str
    param: str | None = None


def read_vllm_error(payload: bytes) -> VllmError | None:
    """The message of any of vLLM's error shapes, or None for a body that is none of them."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    nested = body.get("error")
    error = nested if isinstance(nested, dict) else body
    message, param = error.get("message"), error.get("param")
    if isinstance(message, str) and message:
        return VllmError(message, param if isinstance(param, str) else None)
    return read_fastapi_detail(body.get("detail"))


def read_fastapi_detail(detail: object) -> VllmError | None:
    """FastAPI's ``detail``: a string, or its validation errors (``loc``, ``msg``; their
    ``input`` echoes the request and is left out)."""
    if isinstance(detail, str) and detail:
        return VllmError(detail)
    if not isinstance(detail, list) or not detail or not isinstance(detail[0], dict):
        return None
    first = detail[0]
    loc = [str(part) for part in first.get("loc", []) if part != "body"]
    field = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return VllmError(f"{field}: {msg}{more}" if field else msg + more, field)


def translate_vllm_error(status: int, payload: bytes) -> EngineFailure | None:
    """vLLM's 4xx speak about the request and are passed on (FastAPI's 422 as the 400 an
    OpenAI client expects for a bad body); its 5xx are not."""
    error = read_vllm_error(payload)
    if error is None or not 400 <= status < 500:
        return None
    if any(phrase in error.message.lower() for phrase in CONTEXT_PHRASES):
        return EngineFailure(400, error.message[:1000], code="context_length_exceeded")
    return EngineFailure(400 if status == 422 else status, error.message[:1000])


FAILURE_FIXES = (
    (
        ("unrecognized arguments: --uds",),
        "this vLLM cannot listen on a Unix socket (--uds): upgrade it (pip install -U vllm)",
    ),
    (
        ("unrecognized arguments", "invalid tool call parser", "invalid reasoning parser"),
        "this vLLM does not know an option dsdeploy passes: upgrade it (pip install -U vllm)",
    ),
    (
        ("no module named 'ray'", "ray is not installed"),
        "a model spread over nodes runs its stages through Ray: install it (pip install ray) "
        "and start the cluster (ray start) before serving",
    ),
    (
        ("trust_remote_code", "trust-remote-code"),
        "the model needs Python code of its own, which dsdeploy does not run",
    ),
    (
        ("no cuda gpus are available", "failed to infer device type", "cuda driver"),
        "vLLM found no usable NVIDIA GPU: check the driver and CUDA_VISIBLE_DEVICES "
        "(`dsdeploy doctor`)",
    ),
    (
        (
            "out of memory",
            "no available memory for the cache blocks",
            "larger than the available kv cache memory",
        ),
        "the GPUs lack memory for the weights and this context: lower --ctx-size or --parallel",
    ),
    (
        ("not supported for now", "are not supported", "unknown model architecture"),
        "this vLLM does not know the model's architecture: upgrade it (pip install -U vllm)",
    ),
)


def explain_vllm_failure(log_tail: list[str]) -> str:
    """What to do about a vLLM that did not start, from the end of its log."""
    return explain_from_log(FAILURE_FIXES, log_tail)
