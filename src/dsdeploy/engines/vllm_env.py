"""The environment vLLM starts with: the engine allowlist, plus what dsdeploy chooses for
vLLM (offline, no usage reports, caches in dsdeploy's own folder), plus, for a model that
spans nodes, the operator's choice of network interfaces and Ray cluster. Never a token."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dsdeploy.engines.base import allowlisted_environment

MULTI_NODE_ALLOWLIST = (
    "RAY_ADDRESS",
    "VLLM_HOST_IP",
    "NCCL_SOCKET_IFNAME",
    "GLOO_SOCKET_IFNAME",
)
"""Which Ray cluster and which network interfaces pipeline stages on other nodes use: set
by the operator for the cluster, passed on only when the plan spans nodes."""


def vllm_environment(
    environ: Mapping[str, str], cache: Path, *, multi_node: bool
) -> dict[str, str]:
    """The whole environment of a vLLM engine whose caches live under ``cache``."""
    chosen = {
        # The model folder holds every file: nothing is fetched from a hub at run time, and
        # transformers does not look for newer files or tokens either.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(cache / "huggingface"),
        # torch.compile and CUDA graph caches survive restarts: a restart skips the compile.
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        # vLLM reports usage to its authors unless told not to; a private server does not.
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if multi_node:
        chosen |= {name: environ[name] for name in MULTI_NODE_ALLOWLIST if name in environ}
    return allowlisted_environment(environ, chosen)
